// What ltf's CPU kernels share (`lstm_cpu.cc`, `ctlstm_cpu.cc`): 16-wide float vectors through
// GCC's vector extensions, the rational tanh and σ, exp and log for softplus, the spin barrier
// at which the threads meet each step, and the flush of denormals inside the kernels' threads.

#ifndef LTF_KERNELS_KERNEL_COMMON_H_
#define LTF_KERNELS_KERNEL_COMMON_H_

#include <omp.h>
#include <sched.h>
#include <xmmintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "xla/ffi/api/ffi.h"

namespace ltf_kernels {

namespace ffi = xla::ffi;

constexpr int kLanes = 16;  // units per block: one vector per gate

typedef float v16 __attribute__((vector_size(64)));

inline v16 load(const float* p) { v16 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }
inline v16 splat(float x) { return v16{} + x; }
// Keeps v in a register: without it GCC folds each use of a loaded W vector into its FMA as a
// memory operand, one 64-byte load per FMA (R of them per vector) where one load would do
inline void pin(v16& v) { asm("" : "+v"(v)); }

// tanh(x) = x P(x²) / Q(x²) on |x| <= 7.905 (±1 to float precision beyond)
inline v16 tanh16(v16 x) {
  const v16 lim = splat(7.90531110763549805f);
  x = x > lim ? lim : x;
  x = x < -lim ? -lim : x;
  const v16 x2 = x * x;
  v16 p = splat(-2.76076847742355e-16f);
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  v16 q = splat(1.19825839466702e-06f);
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

inline v16 sigmoid16(v16 x) { return 0.5f + 0.5f * tanh16(0.5f * x); }

typedef int32_t i16v __attribute__((vector_size(64)));

inline i16v as_int(v16 x) { i16v i; std::memcpy(&i, &x, sizeof i); return i; }
inline v16 as_float(i16v i) { v16 x; std::memcpy(&x, &i, sizeof x); return x; }
inline v16 select(i16v mask, v16 yes, v16 no) { return mask ? yes : no; }

// exp(x) as Cephes' expf: x = n ln 2 + r, |r| <= ln 2 / 2, e^r by a degree-7 polynomial, times 2^n
// (relative error < 2e-7); 0 below −87.3 (the kernels flush denormals anyway)
inline v16 exp16(v16 x) {
  const v16 lo = splat(-87.3365447505531f), hi = splat(88.3762626647949f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v16 t = x * 1.44269504088896341f + 0.5f;
  i16v n = __builtin_convertvector(t, i16v);
  n += __builtin_convertvector(n, v16) > t;  // floor(t): −1 where truncation rounded a negative t up
  const v16 nf = __builtin_convertvector(n, v16);
  const v16 r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const v16 scaled = p * as_float((n + 127) << 23);
  return x <= lo ? splat(0.0f) : scaled;
}

// log(x) for x > 0 as Cephes' logf: x = m 2^e, m in [√½, √2), log(m) by a polynomial in m − 1
inline v16 log16(v16 x) {
  const i16v bits = as_int(x);
  i16v e = ((bits >> 23) & 0xff) - 126;
  v16 m = as_float((bits & 0x807fffff) | 0x3f000000);  // [0.5, 1)
  const i16v small = m < 0.707106781186547524f;
  e += small;  // (−1 where small)
  m = select(small, m + m, m) - 1.0f;
  const v16 z = m * m;
  v16 y = splat(7.0376836292e-2f);
  y = y * m + -1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m + -1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m + -1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m + -2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  const v16 ef = __builtin_convertvector(e, v16);
  y = y * m * z + ef * -2.12194440e-4f - 0.5f * z;
  return m + y + ef * 0.693359375f;
}

// softplus(x) = max(x, 0) + log1p(e^{−|x|}); log1p(y) = log(u) y / (u − 1), u = 1 + y, keeps the
// digits of a small y that 1 + y rounds away (and is y itself where u rounds to 1)
inline v16 softplus16(v16 x) {
  const v16 y = exp16(x < 0 ? x : -x);
  const v16 u = 1.0f + y;
  const v16 d = u - 1.0f;
  const v16 log1p_y = select(d == 0, y, log16(u) * (y / select(d == 0, splat(1.0f), d)));
  return (x > 0 ? x : splat(0.0f)) + log1p_y;
}

// The threads meet once or twice per step: a spin barrier, because libgomp's own may put a
// waiting thread to sleep and wake it through the kernel, which on 2 cores shared with XLA's
// threads cost as much as the step itself (T = 1,024, H = 128). After kSpins pauses (tens of µs,
// a step's work) a waiting thread yields its core, so that when more threads than cores share the
// machine (two trainings at once) a barrier whose other thread was descheduled does not spin on:
// 1,000 against 20,000 spins took two such processes from 1.3x to 1.15x the time of one thread
// each (`ltf.sweep_runner` gives parallel jobs their share of the cores through OMP_NUM_THREADS).
class SpinBarrier {
 public:
  void set_size(int n) { n_ = n; }  // the team's size, before any thread waits
  void wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {  // the last one releases the rest
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < kSpins) _mm_pause(); else sched_yield();
    }
  }

 private:
  static constexpr int kSpins = 1000;
  int n_ = 1;
  alignas(64) std::atomic<int> arrived_{0};
  alignas(64) std::atomic<int> generation_{0};
};

// Denormals flushed to zero inside the kernel's threads (as XLA's CPU threads run): a decaying
// cell state must not fall onto the slow path of subnormal arithmetic in one thread.
class FlushDenormals {
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  const unsigned int saved_;
};

// The unit blocks [first, last) of thread `me` of `n`, of a shape with U() blocks.
template <typename Shape>
inline void own_blocks(const Shape& s, int me, int n, int64_t* first, int64_t* last) {
  *first = s.U() * me / n;
  *last = s.U() * (me + 1) / n;
}

template <typename Shape>
inline int n_threads(const Shape& s) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), s.U())));
}

// Runs body(first, last, barrier) on a team of n_threads(s) threads, each with its own unit
// blocks [first, last), denormals flushed, meeting at `barrier` (sized to the team OpenMP gave,
// which may have fewer threads than asked).
template <typename Shape, typename Body>
inline void run_team(const Shape& s, Body body) {
  SpinBarrier barrier;
#pragma omp parallel num_threads(n_threads(s))
  {
#pragma omp single
    barrier.set_size(omp_get_num_threads());  // (single ends in a barrier: every thread sees the size)
    const FlushDenormals flush;
    int64_t first, last;
    own_blocks(s, omp_get_thread_num(), omp_get_num_threads(), &first, &last);
    body(first, last, barrier);
  }
}

// An invalid-argument error naming the kernel ("ltf lstm kernel: ...") unless ok.
inline ffi::Error check(bool ok, const char* kernel, const std::string& what) {
  return ok ? ffi::Error::Success() : ffi::Error(ffi::ErrorCode::kInvalidArgument, std::string(kernel) + ": " + what);
}

template <typename Buf>
inline int64_t elements(const Buf& buffer) {
  int64_t n = 1;
  for (int64_t d : buffer.dimensions()) n *= d;
  return n;
}

}  // namespace ltf_kernels

#endif  // LTF_KERNELS_KERNEL_COMMON_H_
