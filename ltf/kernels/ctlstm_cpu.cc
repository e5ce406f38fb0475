// The continuous-time LSTM's recurrence (Mei & Eisner 2017; `ltf/cells/ctlstm.py`) over a whole
// sequence, forward and backward, as two XLA FFI custom calls for the CPU (`ltf.cpu_kernel`
// compiles this file with lstm_cpu.cc and registers them). Per step t, with Δt_t per batch row:
//
//   (C, C̄, δ, o, h)_{t-1} <- (1 − r_t)(...)        (a reset zeroes the carry before the step)
//   e = exp(−δ Δt),  C(t) = C e + C̄ (1 − e)        (C relaxes towards C̄ over the gap)
//   h(t) = o ⊙ tanh(C(t))                           (the output just before the event)
//   z_t = zs_t + b + h(t) W_h                       (7 gate blocks; zs_t = x_t W_x, projected before)
//   i, f, o', ī, f̄ = σ(z),  g = tanh(z_g),  δ' = softplus(z_δ)
//   C_t = f ⊙ C(t) + i ⊙ g,  C̄_t = f̄ ⊙ C̄ + ī ⊙ g,  h_t = o' ⊙ tanh(C_t)
//   a masked step (m_t = 0) keeps (C, C̄, δ, o, h)_{t-1} (after the reset) and emits h_{t-1}.
//
// Forward, per step: phase A, each thread its own units of h(t) (written to hds, which dW_h and
// the backward read) and C(t) (a scratch row); one barrier, since the matmul reads all of h(t);
// phase B, a block of R rows × 16 units gets its seven gates from the matmul's accumulators and
// writes C_t, C̄_t, δ_t, o_t and h_t. W_h is packed [unit block][k][gate][16] as in lstm_cpu.cc.
//
// Backward, per step from T down to 1, in two phases with a barrier between them:
//   1. per own unit, unmasked rows: dh = dh_carry + dhs_t; dC~ = dC + dh o' (1 − tanh²C_t),
//      do~ = do + dh tanh C_t; dz_o = do~ o'(1 − o'), dz_δ = dδ σ(z_δ), dz_i = dC~ g i(1 − i),
//      dz_f = dC~ C(t) f(1 − f), dz_g = (dC~ i + dC̄ ī)(1 − g²), dz_ī = dC̄ g ī(1 − ī),
//      dz_f̄ = dC̄ C̄ f̄(1 − f̄); masked rows: dz = 0.
//   2. per own unit: dh(t) = dz_t W_hᵀ (reads dz_t of every unit); dC(t) = dC~ f + dh(t) o (1 − tanh²C(t));
//      (dC, dC̄, dδ, do)_{t-1} = (dC(t) e, dC̄ f̄ + dC(t)(1 − e), −q Δt, dh(t) tanh C(t)) with
//      q = dC(t)(C − C̄) e, dh_{t-1} = 0 and dΔt = −Σ_units q δ (the kernel writes each unit's
//      term; the caller sums them); a masked row passes (dC, dC̄, dδ, do, dh) through; then the reset.
// dW_h = Σ_t h(t)ᵀ dz_t and d b = Σ_t dz_t are left to the caller, as in lstm_cpu.cc.
//
// σ(z_δ) is stored in place of δ' among the gates, for dz_δ; δ' itself is in the carry.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernel_common.h"

namespace ffi = xla::ffi;

namespace {

using namespace ltf_kernels;  // NOLINT: the shared vectors, activations and barrier

constexpr int kGates = 7;    // i, f, g, o, ī, f̄, δ: the cell's gate blocks, in its order
constexpr int kCarried = 4;  // C, C̄, δ, o: the carry's c, B x 4H
constexpr int kRows = 3;     // batch rows per register block in the forward step (21 accumulators)
constexpr int kBackRows = 8;  // batch rows per register block of dz_t W_hᵀ (8 accumulators)

struct Shape {
  int64_t T, B, H;
  int64_t G() const { return kGates * H; }
  int64_t C() const { return kCarried * H; }
  int64_t U() const { return H / kLanes; }
};

// The carry's four parts at unit offset u of a row (zeros for a reset row: null).
struct Carry {
  v16 c, c_bar, delta, o;
};

inline Carry read_carry(const float* row, int64_t H, int64_t u) {
  if (row == nullptr) return Carry{splat(0.0f), splat(0.0f), splat(0.0f), splat(0.0f)};
  return Carry{load(row + u), load(row + H + u), load(row + 2 * H + u), load(row + 3 * H + u)};
}

// Rows' carries at step t after the reset: c_rows[b] points at C_{t-1}'s row (4H), or is null.
inline void carry_rows(const Shape& s, int64_t t, const float* cs, const float* c0, const float* resets,
                       std::vector<const float*>* c_rows) {
  const float* before = t ? cs + (t - 1) * s.B * s.C() : c0;
  for (int64_t b = 0; b < s.B; ++b) (*c_rows)[b] = resets[t * s.B + b] != 0.0f ? nullptr : before + b * s.C();
}

// Phase A for a row's 16 units at u: C(t) into cd_row, h(t) into hd_row.
inline void relax(const Carry& k, v16 dt, int64_t u, float* cd_row, float* hd_row) {
  const v16 e = exp16(-k.delta * dt);           // e = exp(−δ Δt)
  const v16 cd = k.c * e + k.c_bar * (1.0f - e);  // C(t) = C e + C̄ (1 − e)
  store(cd_row + u, cd);
  store(hd_row + u, k.o * tanh16(cd));          // h(t) = o ⊙ tanh(C(t))
}

// Phase B: rows [b0, b0 + R) × the 16 units of block ub at step t.
template <int R>
inline void forward_block(const Shape& s, int64_t ub, int64_t b0, const float* z_t, const float* bias,
                          const float* w_block, const float* hd_t, const float* cd, const float* const* c_rows,
                          const float* h_before, const float* m_t, float* gates_t, float* cs_t, float* hs_t) {
  const int64_t G = s.G(), H = s.H, u = ub * kLanes;
  v16 acc[R][kGates];
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < kGates; ++g) acc[r][g] = load(z_t + (b0 + r) * G + g * H + u) + load(bias + g * H + u);
  for (int64_t k = 0; k < H; ++k) {  // z += h(t) W_h for this block's 7 × 16 columns
    const float* w = w_block + k * kGates * kLanes;
    v16 wg[kGates];
    for (int g = 0; g < kGates; ++g) {
      wg[g] = load(w + g * kLanes);
      pin(wg[g]);
    }
    for (int r = 0; r < R; ++r) {
      const float a = hd_t[(b0 + r) * H + k];
      for (int g = 0; g < kGates; ++g) acc[r][g] += a * wg[g];
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t b = b0 + r, row = b * H + u;
    const v16 i = sigmoid16(acc[r][0]), f = sigmoid16(acc[r][1]), g = tanh16(acc[r][2]);
    const v16 o = sigmoid16(acc[r][3]), i_bar = sigmoid16(acc[r][4]), f_bar = sigmoid16(acc[r][5]);
    const v16 delta = softplus16(acc[r][6]);  // δ' = softplus(z_δ)
    const Carry kept = read_carry(c_rows[b], H, u);
    v16 c = f * load(cd + row) + i * g;  // C_t = f ⊙ C(t) + i ⊙ g
    v16 c_bar = f_bar * kept.c_bar + i_bar * g;  // C̄_t = f̄ ⊙ C̄ + ī ⊙ g
    v16 h = o * tanh16(c);  // h_t = o' ⊙ tanh(C_t)
    const v16 activated[kGates] = {i, f, g, o, i_bar, f_bar, sigmoid16(acc[r][6])};
    for (int q = 0; q < kGates; ++q) store(gates_t + b * G + q * H + u, activated[q]);
    Carry next{c, c_bar, delta, o};
    if (!(m_t[b] > 0.0f)) {  // a masked step keeps the carry
      next = kept;
      h = c_rows[b] ? load(h_before + row) : splat(0.0f);
    }
    float* c_out = cs_t + b * s.C();
    store(c_out + u, next.c); store(c_out + H + u, next.c_bar);
    store(c_out + 2 * H + u, next.delta); store(c_out + 3 * H + u, next.o);
    store(hs_t + row, h);
  }
}

void forward(const Shape& s, const float* zs, const float* bias, const float* w_packed, const float* h0,
             const float* c0, const float* dts, const float* masks, const float* resets, float* gates, float* cs,
             float* hs, float* hds) {
  const int64_t B = s.B, H = s.H, G = s.G();
  std::vector<float> cd(B * H);  // C(t) of the step: each thread its own units
  run_team(s, [&](int64_t first, int64_t last, SpinBarrier& barrier) {
    std::vector<const float*> c_rows(B);
    for (int64_t t = 0; t < s.T; ++t) {
      carry_rows(s, t, cs, c0, resets, &c_rows);
      float* hd_t = hds + t * B * H;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t ub = first; ub < last; ++ub)
          relax(read_carry(c_rows[b], H, ub * kLanes), splat(dts[t * B + b]), ub * kLanes, cd.data() + b * H,
                hd_t + b * H);
      barrier.wait();  // the matmul reads h(t) of every unit
      const float* h_before = t ? hs + (t - 1) * B * H : h0;
      for (int64_t ub = first; ub < last; ++ub) {
        const float* w_block = w_packed + ub * H * kGates * kLanes;
        int64_t b0 = 0;
        for (; b0 + kRows <= B; b0 += kRows)
          forward_block<kRows>(s, ub, b0, zs + t * B * G, bias, w_block, hd_t, cd.data(), c_rows.data(), h_before,
                               masks + t * B, gates + t * B * G, cs + t * B * s.C(), hs + t * B * H);
        for (; b0 < B; ++b0)
          forward_block<1>(s, ub, b0, zs + t * B * G, bias, w_block, hd_t, cd.data(), c_rows.data(), h_before,
                           masks + t * B, gates + t * B * G, cs + t * B * s.C(), hs + t * B * H);
      }
      // no barrier: step t + 1's phase A reads only this thread's units of the carry
    }
  });
}

// What phase 1 leaves phase 2 for a row's own units: dC(t) without the path through h(t),
// dC̄ without C(t)'s share, and (recomputed from the carry) e and tanh C(t).
struct Scratch {
  std::vector<float> dcd, dc_bar, e, tcd;
  explicit Scratch(int64_t n) : dcd(n), dc_bar(n), e(n), tcd(n) {}
};

// Phase 1 for row b, units at u: dz over the gates (written over them); what phase 2 needs into
// `scratch`; dh = dh_carry + dhs_t into dh_carry.
inline void backward_gates(const Shape& s, int64_t b, int64_t u, float m, float dt, const float* c_row,
                           float* gates_dz_t, const float* dhs_t, float* dh_carry, const float* dc_carry,
                           Scratch* scratch) {
  const int64_t G = s.G(), H = s.H, row = b * H + u;
  float* a = gates_dz_t + b * G + u;
  const v16 dh = load(dh_carry + row) + load(dhs_t + row);
  store(dh_carry + row, dh);
  if (!(m > 0.0f)) {  // a masked step: no gate saw anything
    for (int q = 0; q < kGates; ++q) store(a + q * H, splat(0.0f));
    return;
  }
  const Carry k = read_carry(c_row, H, u);
  const v16 e = exp16(-k.delta * dt), cd = k.c * e + k.c_bar * (1.0f - e);
  const v16 i = load(a), f = load(a + H), g = load(a + 2 * H), o = load(a + 3 * H);
  const v16 i_bar = load(a + 4 * H), f_bar = load(a + 5 * H), s_delta = load(a + 6 * H);
  const float* dc = dc_carry + b * s.C();
  const v16 dc_bar = load(dc + H + u), d_delta = load(dc + 2 * H + u);
  const v16 tc = tanh16(f * cd + i * g);  // tanh C_t
  const v16 dc_new = load(dc + u) + dh * o * (1.0f - tc * tc);
  const v16 do_new = load(dc + 3 * H + u) + dh * tc;
  const v16 dz[kGates] = {dc_new * g * i * (1.0f - i), dc_new * cd * f * (1.0f - f),
                          (dc_new * i + dc_bar * i_bar) * (1.0f - g * g), do_new * o * (1.0f - o),
                          dc_bar * g * i_bar * (1.0f - i_bar), dc_bar * k.c_bar * f_bar * (1.0f - f_bar),
                          d_delta * s_delta};  // softplus' = σ
  for (int q = 0; q < kGates; ++q) store(a + q * H, dz[q]);
  store(scratch->dcd.data() + row, dc_new * f);
  store(scratch->dc_bar.data() + row, dc_bar * f_bar);
  store(scratch->e.data() + row, e);
  store(scratch->tcd.data() + row, tanh16(cd));
}

// Phase 2 for rows [b0, b0 + R) of unit block ub: dh(t) = dz_t W_hᵀ, then through h(t) and C(t)
// to the carry of step t − 1 (and Δt), then the reset.
template <int R>
inline void backward_matmul(const Shape& s, int64_t ub, int64_t b0, const float* dz_t, const float* wt_block,
                            const float* m_t, const float* r_t, const float* dts_t, const float* const* c_rows,
                            const Scratch& scratch, float* dh_carry, float* dc_carry, float* ddts_t) {
  const int64_t G = s.G(), H = s.H, u = ub * kLanes;
  v16 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = splat(0.0f);
  for (int64_t k = 0; k < G; ++k) {
    const v16 w = load(wt_block + k * kLanes);
    for (int r = 0; r < R; ++r) acc[r] += dz_t[(b0 + r) * G + k] * w;
  }
  for (int r = 0; r < R; ++r) {
    const int64_t b = b0 + r, row = b * H + u;
    float* dc = dc_carry + b * s.C();
    v16 d_carry[kCarried] = {load(dc + u), load(dc + H + u), load(dc + 2 * H + u), load(dc + 3 * H + u)};
    v16 dh = load(dh_carry + row), d_dt = splat(0.0f);
    if (m_t[b] > 0.0f) {
      const Carry k = read_carry(c_rows[b], H, u);
      const v16 e = load(scratch.e.data() + row), tcd = load(scratch.tcd.data() + row);
      const v16 dcd = load(scratch.dcd.data() + row) + acc[r] * k.o * (1.0f - tcd * tcd);  // dC(t)
      const v16 q = dcd * (k.c - k.c_bar) * e;  // dC(t)/d(δ Δt) = −(C − C̄) e
      d_carry[0] = dcd * e;
      d_carry[1] = load(scratch.dc_bar.data() + row) + dcd * (1.0f - e);
      d_carry[2] = -q * dts_t[b];
      d_carry[3] = acc[r] * tcd;
      d_dt = -q * k.delta;
      dh = splat(0.0f);  // h_{t-1} is not read: h(t) comes from the carry
    }
    const float keep = 1.0f - r_t[b];
    for (int q = 0; q < kCarried; ++q) store(dc + q * H + u, keep * d_carry[q]);
    store(dh_carry + row, keep * dh);
    store(ddts_t + row, d_dt);
  }
}

// gates_dzs: the gates, overwritten with dz at each step (the custom call aliases them).
void backward(const Shape& s, float* gates_dzs, const float* cs, const float* c0, const float* dts,
              const float* masks, const float* resets, const float* wt_packed, const float* dhs,
              const float* dh_final, const float* dc_final, float* dh0, float* dc0, float* ddts) {
  const int64_t B = s.B, H = s.H, G = s.G();
  std::copy(dh_final, dh_final + B * H, dh0);  // dh0 and dc0 serve as the carries
  std::copy(dc_final, dc_final + B * s.C(), dc0);
  Scratch scratch(B * H);
  run_team(s, [&](int64_t first, int64_t last, SpinBarrier& barrier) {
    std::vector<const float*> c_rows(B);
    for (int64_t t = s.T - 1; t >= 0; --t) {
      carry_rows(s, t, cs, c0, resets, &c_rows);
      float* dz_t = gates_dzs + t * B * G;
      for (int64_t ub = first; ub < last; ++ub)
        for (int64_t b = 0; b < B; ++b)
          backward_gates(s, b, ub * kLanes, masks[t * B + b], dts[t * B + b], c_rows[b], dz_t, dhs + t * B * H,
                         dh0, dc0, &scratch);
      barrier.wait();  // dz_t W_hᵀ reads dz_t of every unit
      for (int64_t ub = first; ub < last; ++ub) {
        const float* wt_block = wt_packed + ub * G * kLanes;
        int64_t b0 = 0;
        for (; b0 + kBackRows <= B; b0 += kBackRows)
          backward_matmul<kBackRows>(s, ub, b0, dz_t, wt_block, masks + t * B, resets + t * B, dts + t * B,
                                     c_rows.data(), scratch, dh0, dc0, ddts + t * B * H);
        for (; b0 < B; ++b0)
          backward_matmul<1>(s, ub, b0, dz_t, wt_block, masks + t * B, resets + t * B, dts + t * B, c_rows.data(),
                             scratch, dh0, dc0, ddts + t * B * H);
      }
      // no barrier: step t − 1's phase 1 reads and writes only this thread's units
    }
  });
}

ffi::Error check(bool ok, const std::string& what) { return ltf_kernels::check(ok, "ltf ctlstm kernel", what); }

ffi::Error forward_impl(ffi::Buffer<ffi::F32> zs, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> w_packed,
                        ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> dts,
                        ffi::Buffer<ffi::F32> masks, ffi::Buffer<ffi::F32> resets, ffi::ResultBuffer<ffi::F32> gates,
                        ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> hs,
                        ffi::ResultBuffer<ffi::F32> hds) {
  auto dims = zs.dimensions();
  if (dims.size() != 3) return check(false, "zs must be T x B x 7H");
  const Shape s{dims[0], dims[1], dims[2] / kGates};
  ffi::Error e = check(dims[2] == kGates * s.H && s.H % kLanes == 0, "7H columns with H a multiple of 16");
  if (e.failure()) return e;
  e = check(elements(bias) == s.G() && elements(w_packed) == s.H * s.G() && elements(h0) == s.B * s.H &&
                elements(c0) == s.B * s.C() && elements(dts) == s.T * s.B && elements(masks) == s.T * s.B &&
                elements(resets) == s.T * s.B,
            "operand sizes disagree with zs");
  if (e.failure()) return e;
  forward(s, zs.typed_data(), bias.typed_data(), w_packed.typed_data(), h0.typed_data(), c0.typed_data(),
          dts.typed_data(), masks.typed_data(), resets.typed_data(), gates->typed_data(), cs->typed_data(),
          hs->typed_data(), hds->typed_data());
  return ffi::Error::Success();
}

ffi::Error backward_impl(ffi::Buffer<ffi::F32> gates, ffi::Buffer<ffi::F32> cs, ffi::Buffer<ffi::F32> c0,
                         ffi::Buffer<ffi::F32> dts, ffi::Buffer<ffi::F32> masks, ffi::Buffer<ffi::F32> resets,
                         ffi::Buffer<ffi::F32> wt_packed, ffi::Buffer<ffi::F32> dhs, ffi::Buffer<ffi::F32> dh_final,
                         ffi::Buffer<ffi::F32> dc_final, ffi::ResultBuffer<ffi::F32> dzs,
                         ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0,
                         ffi::ResultBuffer<ffi::F32> ddts) {
  auto dims = dhs.dimensions();
  if (dims.size() != 3) return check(false, "dhs must be T x B x H");
  const Shape s{dims[0], dims[1], dims[2]};
  ffi::Error e = check(s.H % kLanes == 0 && elements(gates) == s.T * s.B * s.G() &&
                           elements(cs) == s.T * s.B * s.C() && elements(c0) == s.B * s.C() &&
                           elements(dts) == s.T * s.B && elements(masks) == s.T * s.B &&
                           elements(resets) == s.T * s.B && elements(wt_packed) == s.H * s.G() &&
                           elements(dh_final) == s.B * s.H && elements(dc_final) == s.B * s.C() &&
                           elements(*dzs) == elements(gates) && elements(*ddts) == s.T * s.B * s.H,
                       "operand sizes disagree with dhs");
  if (e.failure()) return e;
  // without aliasing (XLA may copy an aliased input that is still in use) the output starts as the input
  if (gates.typed_data() != dzs->typed_data())
    std::copy(gates.typed_data(), gates.typed_data() + elements(gates), dzs->typed_data());
  backward(s, dzs->typed_data(), cs.typed_data(), c0.typed_data(), dts.typed_data(), masks.typed_data(),
           resets.typed_data(), wt_packed.typed_data(), dhs.typed_data(), dh_final.typed_data(),
           dc_final.typed_data(), dh0->typed_data(), dc0->typed_data(), ddts->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LtfCtlstmForward, forward_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // zs, T x B x 7H (without b)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b, 7H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_h packed, H/16 x H x 7 x 16
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // [C, C̄, δ, o]_0, B x 4H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // Δt, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // masks, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // resets, T x B
                                  .Ret<ffi::Buffer<ffi::F32>>()  // gates (i, f, g, o, ī, f̄, σ(z_δ)), T x B x 7H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // [C, C̄, δ, o]_t, T x B x 4H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_t, T x B x H
                                  .Ret<ffi::Buffer<ffi::F32>>());  // h(t), T x B x H

XLA_FFI_DEFINE_HANDLER_SYMBOL(LtfCtlstmBackward, backward_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gates, T x B x 7H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // [C, C̄, δ, o]_t, T x B x 4H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // [C, C̄, δ, o]_0, B x 4H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // Δt, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // masks, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // resets, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_hᵀ packed, H/16 x 7H x 16
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d h_t, T x B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d h_T (final carry), B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d [C, C̄, δ, o]_T, B x 4H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dz, T x B x 7H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d h0, B x H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d [C, C̄, δ, o]_0, B x 4H
                                  .Ret<ffi::Buffer<ffi::F32>>());  // each unit's term of dΔt, T x B x H
