// The forget-gate LSTM's recurrence over a whole sequence, forward and backward, as two XLA FFI
// custom calls for the CPU (`ltf.cpu_kernel` compiles this file at first use and registers them).
//
//   (C, h)_{t-1} <- (1 − r_t)(C, h)_{t-1}         (a reset zeroes the carry before the step)
//   C' = γ_t ⊙ C_{t-1},  h' = γ_t ⊙ h_{t-1}        (GRU-D's decay; γ ≡ 1 without it)
//   or, for T-LSTM (Baytas et al. 2017), C' = C_{t-1} + (g_t − 1) ⊙ S,  S = tanh(C_{t-1} W_d + b_d)
//                                                  (the short-term memory S discounted by g(Δt))
//   z_t = zs_t + b + h' W_h                        (zs_t = x_t W_x, projected before the call)
//   i = σ(z_i + u_i ⊙ C'),  f = σ(z_f + u_f ⊙ C'),  g = tanh(z_g)
//   C~ = f ⊙ C' + i ⊙ g,  o = σ(z_o + u_o ⊙ C~),  h~ = o ⊙ tanh(C~)
//   (u: the diagonal peepholes of the adaptive forget gate and of Gers et al. 2002; zero without)
//   C_t = k_t ⊙ C~ + (1 − k_t) ⊙ C',  h_t = k_t ⊙ h~ + (1 − k_t) ⊙ h'
//                                                  (Phased LSTM's time gate; k ≡ 1 without it)
//   a masked step (m_t = 0) keeps (C, h)_{t-1} (after the reset, before the decay) and emits h_{t-1}.
// γ, k and g depend on the times and parameters alone: the caller computes them for all steps
// (T x B x H each, or one element when the cell has none) and gets their cotangents back. The
// forward pass also returns S (T-LSTM), over which the backward pass writes dS~ = d(C_{t-1} W_d).
//
// Why a kernel: XLA runs each step as several fused ops with thread-pool waits between them; the
// step's matmul alone is most of the work, and here it is written so that the gate math runs on
// the accumulators while they are still in registers. W_h is packed gate-interleaved per block
// of 16 units ([unit block][k][gate][16]): one block's four gates are four 16-wide vectors, so a
// block of R rows × 16 units gets its (i, f, g, o) pre-activations, then C_t and h_t, without
// writing z_t out and reading it back. Threads (OpenMP) own disjoint unit blocks and meet at one
// barrier per step, since step t + 1 reads all of h_t.
//
// Backward, per step from T down to 1, in two phases with a barrier between them:
//   1. per own unit: dh = dh_carry + dhs_t; with dh~ = m k dh, dc~ = m k dc:
//      dz_o = dh~ tanh(C~) o(1−o);  dC~ = dc~ + dh~ o (1 − tanh²C~) + u_o dz_o;
//      dz_i = dC~ g i(1−i), dz_f = dC~ C' f(1−f), dz_g = dC~ i (1−g²);
//      dC' = dC~ f + u_f dz_f + u_i dz_i + m(1 − k) dc;  dk = m (dh (h~ − h') + dc (C~ − C'));
//      d u += (dz_i C', dz_f C', dz_o C~);  T-LSTM: dS~ = dC'_gates (g − 1)(1 − S²), dg = dC'_gates S
//   2. per own unit: dh' = dz_t W_hᵀ + m(1 − k) dh  (reads dz_t of every unit);
//      dγ = m (dh' h_{t-1} + dC' C_{t-1});  (dc, dh)_{t-1} = γ (dC', dh') (m = 1) or (dc, dh) (m = 0);
//      T-LSTM: dc_{t-1} = dC' + dS~ W_dᵀ  (reads dS~ of every unit)
//   then (dc, dh)_carry = (1 − r_t)(dc, dh)_{t-1}.
// dW_h = Σ_t h'ᵀ dz_t, d b = Σ_t dz_t, dW_d = Σ_t C_{t-1}ᵀ dS~_t and d b_d = Σ_t dS~_t are left
// to the caller: large matmuls and reductions after the scan.
//
// Activations are rational approximations (tanh as Eigen's float tanh, |error| < 4e-7;
// σ(x) = (1 + tanh(x/2)) / 2), vectorised by the compiler with GCC's vector extensions.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernel_common.h"

namespace ffi = xla::ffi;

namespace {

using namespace ltf_kernels;  // NOLINT: the shared vectors, activations and barrier

constexpr int kForwardRows = 4;  // batch rows per register block in the forward step (16 accumulators)
constexpr int kBackRows = 8;     // batch rows per register block of dz_t W_hᵀ (8 accumulators; T-LSTM 16)

struct Shape {
  int64_t T, B, H;
  int64_t G() const { return 4 * H; }
  int64_t U() const { return H / kLanes; }
};

// T-LSTM's short-term memory (all null for the other cells). Forward: w_d packed [U][k][16]
// (the columns of W_d for one block's units), b_d, g (T x B x H) and S written per step.
// Backward: w_d packed [U][j][16] (the rows of W_d), g overwritten with dg, S with dS~.
struct ShortTerm {
  const float* w_d = nullptr;
  const float* b_d = nullptr;
  float* g = nullptr;
  float* s = nullptr;
  bool present() const { return w_d != nullptr; }
};

// One forward block: rows [b0, b0 + R) × units of block ub at step t. h_carry, c_carry: the
// rows' carry after the reset; h_in: h' = γ ⊙ h_carry (h_carry itself without a decay), which the
// matmul reads; gamma_t, k_t: B x H, or null for a cell without the decay or the time gate.
template <int R>
inline void forward_block(const Shape& s, int64_t ub, int64_t b0, const float* z_t, const float* bias,
                          const float* peepholes, const float* w_block, const float* const* h_in,
                          const float* const* h_carry, const float* const* c_carry, const float* gamma_t,
                          const float* k_t, const float* m_t, const ShortTerm& st, int64_t t, float* gates_t,
                          float* c_t, float* h_t) {
  const int64_t G = s.G(), H = s.H, u = ub * kLanes;
  v16 acc[R][4], acc_s[R] = {};  // (acc_s: T-LSTM's S~; zero, and unused, for the other cells)
  if (st.present()) {  // S~ = C_{t-1} W_d + b_d for this block's 16 columns
    const float* wd_block = st.w_d + ub * H * kLanes;
    for (int r = 0; r < R; ++r) acc_s[r] = load(st.b_d + u);
    for (int64_t k = 0; k < H; ++k) {
      const v16 w = load(wd_block + k * kLanes);
      for (int r = 0; r < R; ++r) acc_s[r] += c_carry[r][k] * w;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < 4; ++g) acc[r][g] = load(z_t + (b0 + r) * G + g * H + u) + load(bias + g * H + u);
  for (int64_t k = 0; k < H; ++k) {  // z += h' W_h for this block's 4 × 16 columns
    const float* w = w_block + k * 4 * kLanes;
    v16 w_i = load(w), w_f = load(w + kLanes), w_g = load(w + 2 * kLanes), w_o = load(w + 3 * kLanes);
    pin(w_i); pin(w_f); pin(w_g); pin(w_o);
    for (int r = 0; r < R; ++r) {
      const float a = h_in[r][k];
      acc[r][0] += a * w_i; acc[r][1] += a * w_f; acc[r][2] += a * w_g; acc[r][3] += a * w_o;
    }
  }
  const v16 u_i = load(peepholes + u), u_f = load(peepholes + H + u), u_o = load(peepholes + 2 * H + u);
  for (int r = 0; r < R; ++r) {
    const int64_t b = b0 + r, row = b * H + u;
    const v16 c_keep = load(c_carry[r] + u);
    v16 c_in = gamma_t ? load(gamma_t + row) * c_keep : c_keep;  // C' = γ ⊙ C_{t-1}
    if (st.present()) {  // C' = C_{t-1} + (g − 1) ⊙ S,  S = tanh(S~)
      const int64_t at = t * s.B * H + row;
      const v16 short_term = tanh16(acc_s[r]);
      store(st.s + at, short_term);
      c_in = c_keep + (load(st.g + at) - 1.0f) * short_term;
    }
    const v16 i = sigmoid16(acc[r][0] + u_i * c_in);  // i = σ(z_i + u_i ⊙ C')
    const v16 f = sigmoid16(acc[r][1] + u_f * c_in);  // f = σ(z_f + u_f ⊙ C')
    const v16 g = tanh16(acc[r][2]);                  // g = tanh(z_g)
    v16 c = f * c_in + i * g;                         // C~ = f ⊙ C' + i ⊙ g
    const v16 o = sigmoid16(acc[r][3] + u_o * c);     // o = σ(z_o + u_o ⊙ C~)
    v16 h = o * tanh16(c);                            // h~ = o ⊙ tanh(C~)
    float* gates = gates_t + b * G + u;
    store(gates, i); store(gates + H, f); store(gates + 2 * H, g); store(gates + 3 * H, o);
    if (k_t) {  // C_t = k ⊙ C~ + (1 − k) ⊙ C',  h_t = k ⊙ h~ + (1 − k) ⊙ h'
      const v16 k = load(k_t + row);
      c = k * c + (1.0f - k) * c_in;
      h = k * h + (1.0f - k) * load(h_in[r] + u);
    }
    if (m_t[b] == 0.0f) { c = c_keep; h = load(h_carry[r] + u); }  // a masked step keeps the carry
    store(c_t + row, c);
    store(h_t + row, h);
  }
}

void forward(const Shape& s, const float* zs, const float* bias, const float* peepholes, const float* w_packed,
             const float* h0, const float* c0, const float* masks, const float* resets, const float* gammas,
             const float* ks, const ShortTerm& st, float* gates, float* cs, float* hs) {
  const int64_t B = s.B, H = s.H, G = s.G();
  const std::vector<float> zeros(H, 0.0f);
  run_team(s, [&](int64_t first, int64_t last, SpinBarrier& barrier) {
    std::vector<const float*> h_carry(B), c_carry(B), h_in(B);
    // h' = γ ⊙ h_{t-1} for every unit, since the matmul reads them all: each thread decays its own
    // copy (B·H multiplies against the step's B·H·4H multiply-adds), so that no barrier is added
    std::vector<float> h_decayed(gammas ? B * H : 0);
    for (int64_t t = 0; t < s.T; ++t) {
      const float* h_before = t ? hs + (t - 1) * B * H : h0;
      const float* c_before = t ? cs + (t - 1) * B * H : c0;
      const float* gamma_t = gammas ? gammas + t * B * H : nullptr;
      const float* k_t = ks ? ks + t * B * H : nullptr;
      for (int64_t b = 0; b < B; ++b) {  // the carry after the step's reset
        const bool reset = resets[t * B + b] != 0.0f;
        h_carry[b] = reset ? zeros.data() : h_before + b * H;
        c_carry[b] = reset ? zeros.data() : c_before + b * H;
        h_in[b] = h_carry[b];
        if (gamma_t) {
          float* decayed = h_decayed.data() + b * H;
          for (int64_t j = 0; j < H; ++j) decayed[j] = gamma_t[b * H + j] * h_carry[b][j];
          h_in[b] = decayed;
        }
      }
      const float* z_t = zs + t * B * G;
      for (int64_t ub = first; ub < last; ++ub) {
        const float* w_block = w_packed + ub * H * 4 * kLanes;
        int64_t b0 = 0;
        for (; b0 + kForwardRows <= B; b0 += kForwardRows)
          forward_block<kForwardRows>(s, ub, b0, z_t, bias, peepholes, w_block, &h_in[b0], &h_carry[b0],
                                      &c_carry[b0], gamma_t, k_t, masks + t * B, st, t, gates + t * B * G,
                                      cs + t * B * H, hs + t * B * H);
        for (; b0 < B; ++b0)
          forward_block<1>(s, ub, b0, z_t, bias, peepholes, w_block, &h_in[b0], &h_carry[b0], &c_carry[b0],
                           gamma_t, k_t, masks + t * B, st, t, gates + t * B * G, cs + t * B * H, hs + t * B * H);
      }
      barrier.wait();
    }
  });
}

// Phase 1 of a backward step for one row and unit block: dz_t over the gates; into dc_carry dC'
// (before the decay; a masked step's dc as it is); into dh_direct what of dh reaches h' other than
// through z_t; dk over k_t; d u. c_keep, h_keep: the step's carry after its reset (null: reset).
inline void backward_gates(const Shape& s, int64_t b, int64_t u, float m, float* gates_dz_t, const float* c_keep,
                           const float* h_keep, const float* gamma_t, float* k_dk_t, const float* peepholes,
                           const float* dhs_t, const float* dh_carry, float* dh_direct, float* dc_carry,
                           float* du, float* g_dg_t, float* s_ds_t) {
  const int64_t G = s.G(), H = s.H, row = b * H + u;
  float* a = gates_dz_t + b * G + u;
  const v16 i = load(a), f = load(a + H), g = load(a + 2 * H), o = load(a + 3 * H);
  const v16 dh = load(dh_carry + row) + load(dhs_t + row);
  const v16 dc = load(dc_carry + row);
  const v16 gamma = gamma_t ? load(gamma_t + row) : splat(1.0f);
  const v16 k = k_dk_t ? load(k_dk_t + row) : splat(1.0f);
  v16 c_in = c_keep ? gamma * load(c_keep + row) : splat(0.0f);  // C'
  v16 g_minus_1, short_term;
  if (s_ds_t) {  // T-LSTM: C' = C_{t-1} + (g − 1) S (S = tanh(b_d) after a reset)
    g_minus_1 = load(g_dg_t + row) - 1.0f;
    short_term = load(s_ds_t + row);
    c_in += g_minus_1 * short_term;
  }
  const v16 c_new = f * c_in + i * g;                                  // C~, as the forward step made it
  const v16 tc = tanh16(c_new);
  const v16 u_i = load(peepholes + u), u_f = load(peepholes + H + u), u_o = load(peepholes + 2 * H + u);
  const v16 mk = m * k, pass = 1.0f - mk;  // pass: m(1 − k) + (1 − m), the share that skips the gates
  const v16 dh_new = mk * dh;
  const v16 dz_o = dh_new * tc * o * (1.0f - o);
  const v16 dc_new = mk * dc + dh_new * o * (1.0f - tc * tc) + u_o * dz_o;  // o reads C~ through u_o
  const v16 dz_i = dc_new * g * i * (1.0f - i), dz_f = dc_new * c_in * f * (1.0f - f);
  store(a, dz_i);
  store(a + H, dz_f);
  store(a + 2 * H, dc_new * i * (1.0f - g * g));
  store(a + 3 * H, dz_o);
  // C' reaches C~ through f and, by the peepholes, through i and f themselves
  const v16 dc_in = dc_new * f + u_f * dz_f + u_i * dz_i;
  store(dc_carry + row, dc_in + pass * dc);
  if (s_ds_t) {  // dS~ = dC' (g − 1)(1 − S²), dg = dC' S (zero on a masked step: dc_in is)
    store(s_ds_t + row, dc_in * g_minus_1 * (1.0f - short_term * short_term));
    store(g_dg_t + row, dc_in * short_term);
  }
  store(dh_direct + row, pass * dh);
  if (k_dk_t) {  // dk = m (dh (h~ − h') + dc (C~ − C'))
    const v16 h_in = h_keep ? gamma * load(h_keep + row) : splat(0.0f);
    store(k_dk_t + row, m * (dh * (o * tc - h_in) + dc * (c_new - c_in)));
  }
  store(du + u, load(du + u) + dz_i * c_in);  // d u_i += dz_i C', d u_f += dz_f C', d u_o += dz_o C~
  store(du + H + u, load(du + H + u) + dz_f * c_in);
  store(du + 2 * H + u, load(du + 2 * H + u) + dz_o * c_new);
}

// Phase 2 for rows [b0, b0 + R) of unit block ub: dh' = dz_t W_hᵀ + dh_direct; with a decay dγ
// over γ_t and (dC', dh') scaled by γ; then the reset.
template <int R>
inline void backward_matmul(const Shape& s, int64_t ub, int64_t b0, const float* dz_t, const float* wt_block,
                            const float* m_t, const float* r_t, const float* c_before, const float* h_before,
                            float* gamma_dgamma_t, const float* dh_direct, float* dh_carry, float* dc_carry,
                            const float* wdt_block, const float* ds_t) {
  const int64_t G = s.G(), H = s.H, u = ub * kLanes;
  v16 acc[R], acc_c[R];
  for (int r = 0; r < R; ++r) acc[r] = acc_c[r] = splat(0.0f);
  for (int64_t k = 0; k < G; ++k) {
    const v16 w = load(wt_block + k * kLanes);
    for (int r = 0; r < R; ++r) acc[r] += dz_t[(b0 + r) * G + k] * w;
  }
  if (ds_t) {  // T-LSTM: dC_{t-1} += dS~ W_dᵀ
    for (int64_t j = 0; j < H; ++j) {
      const v16 w = load(wdt_block + j * kLanes);
      for (int r = 0; r < R; ++r) acc_c[r] += ds_t[(b0 + r) * H + j] * w;
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t b = b0 + r, row = b * H + u;
    v16 dh = acc[r] + load(dh_direct + row), dc = load(dc_carry + row) + acc_c[r];
    if (gamma_dgamma_t) {
      const v16 gamma = load(gamma_dgamma_t + row);
      v16 d_gamma = splat(0.0f);
      if (m_t[b] != 0.0f) {  // dγ = dh' ⊙ h_{t-1} + dC' ⊙ C_{t-1};  (dc, dh)_{t-1} = γ ⊙ (dC', dh')
        if (r_t[b] == 0.0f) d_gamma = dh * load(h_before + row) + dc * load(c_before + row);
        dh = gamma * dh;
        dc = gamma * dc;
      }
      store(gamma_dgamma_t + row, d_gamma);
    }
    const float keep = 1.0f - r_t[b];
    store(dh_carry + row, keep * dh);
    store(dc_carry + row, keep * dc);
  }
}

// gates_dzs, gammas_dgammas, ks_dks (and st.g, st.s): inputs read at step t and overwritten there
// with their cotangents (the custom call aliases them); gammas, ks null for a cell without them.
void backward(const Shape& s, float* gates_dzs, const float* cs, const float* hs, const float* h0, const float* c0,
              const float* masks, const float* resets, float* gammas_dgammas, float* ks_dks, const float* wt_packed,
              const float* peepholes, const ShortTerm& st, const float* dhs, const float* dh_final,
              const float* dc_final, float* dh0, float* dc0, float* du) {
  const int64_t B = s.B, H = s.H, G = s.G();
  std::vector<float> dh_direct(B * H, 0.0f);
  std::copy(dh_final, dh_final + B * H, dh0);  // dh0 and dc0 serve as the carries
  std::copy(dc_final, dc_final + B * H, dc0);
  std::fill(du, du + 3 * H, 0.0f);
  run_team(s, [&](int64_t first, int64_t last, SpinBarrier& barrier) {
    for (int64_t t = s.T - 1; t >= 0; --t) {
      const float* c_before = t ? cs + (t - 1) * B * H : c0;
      const float* h_before = t ? hs + (t - 1) * B * H : h0;
      float* gamma_t = gammas_dgammas ? gammas_dgammas + t * B * H : nullptr;
      float* k_t = ks_dks ? ks_dks + t * B * H : nullptr;
      float* g_t = st.present() ? st.g + t * B * H : nullptr;
      float* s_t = st.present() ? st.s + t * B * H : nullptr;
      for (int64_t ub = first; ub < last; ++ub) {
        for (int64_t b = 0; b < B; ++b) {
          const bool reset = resets[t * B + b] != 0.0f;
          backward_gates(s, b, ub * kLanes, masks[t * B + b], gates_dzs + t * B * G, reset ? nullptr : c_before,
                         reset ? nullptr : h_before, gamma_t, k_t, peepholes, dhs + t * B * H, dh0,
                         dh_direct.data(), dc0, du, g_t, s_t);
        }
      }
      barrier.wait();
      for (int64_t ub = first; ub < last; ++ub) {
        const float* wt_block = wt_packed + ub * G * kLanes;
        const float* wdt_block = st.present() ? st.w_d + ub * H * kLanes : nullptr;
        int64_t b0 = 0;
        for (; b0 + kBackRows <= B; b0 += kBackRows)
          backward_matmul<kBackRows>(s, ub, b0, gates_dzs + t * B * G, wt_block, masks + t * B, resets + t * B,
                                     c_before, h_before, gamma_t, dh_direct.data(), dh0, dc0, wdt_block, s_t);
        for (; b0 < B; ++b0)
          backward_matmul<1>(s, ub, b0, gates_dzs + t * B * G, wt_block, masks + t * B, resets + t * B, c_before,
                             h_before, gamma_t, dh_direct.data(), dh0, dc0, wdt_block, s_t);
      }
      // no barrier: step t − 1's phase 1 reads and writes only this thread's units
    }
  });
}

ffi::Error check(bool ok, const std::string& what) { return ltf_kernels::check(ok, "ltf lstm kernel", what); }

// A time factor (γ or k): T x B x H, or one element for a cell without it (then null).
template <typename Buf>
bool time_factor(const Shape& s, const Buf& buffer, bool* present) {
  *present = elements(buffer) == s.T * s.B * s.H;
  return *present || elements(buffer) == 1;
}

// T-LSTM's operands agree: W_d H x H, b_d H, g T x B x H and S (or dS~) T x B x H, or every one of
// them one element; and with no decay or time gate beside them (no cell has both).
template <typename Buf>
bool short_term_sizes(const Shape& s, const Buf& w_d, const Buf* b_d, const Buf& g, int64_t s_elements,
                      bool others, bool* present) {
  *present = elements(w_d) == s.H * s.H;
  const int64_t full = s.T * s.B * s.H;
  if (*present)
    return (b_d == nullptr || elements(*b_d) == s.H) && elements(g) == full && s_elements == full && !others;
  return (b_d == nullptr || elements(*b_d) == 1) && elements(w_d) == 1 && elements(g) == 1 && s_elements == 1;
}

ffi::Error forward_impl(ffi::Buffer<ffi::F32> zs, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> peepholes,
                        ffi::Buffer<ffi::F32> w_packed, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                        ffi::Buffer<ffi::F32> masks, ffi::Buffer<ffi::F32> resets, ffi::Buffer<ffi::F32> gammas,
                        ffi::Buffer<ffi::F32> ks, ffi::Buffer<ffi::F32> w_d, ffi::Buffer<ffi::F32> b_d,
                        ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> gates, ffi::ResultBuffer<ffi::F32> cs,
                        ffi::ResultBuffer<ffi::F32> hs, ffi::ResultBuffer<ffi::F32> short_term) {
  auto dims = zs.dimensions();
  if (dims.size() != 3) return check(false, "zs must be T x B x 4H");
  const Shape s{dims[0], dims[1], dims[2] / 4};
  ffi::Error e = check(dims[2] == 4 * s.H && s.H % kLanes == 0, "4H columns with H a multiple of 16");
  if (e.failure()) return e;
  bool decays = false, blends = false, subspace = false;
  e = check(elements(bias) == s.G() && elements(peepholes) == 3 * s.H && elements(w_packed) == s.H * s.G() &&
                elements(h0) == s.B * s.H && elements(c0) == s.B * s.H && elements(masks) == s.T * s.B &&
                elements(resets) == s.T * s.B && time_factor(s, gammas, &decays) && time_factor(s, ks, &blends),
            "operand sizes disagree with zs");
  if (e.failure()) return e;
  e = check(short_term_sizes(s, w_d, &b_d, g, elements(*short_term), decays || blends, &subspace),
            "T-LSTM's W_d, b_d, g and S disagree with zs or with each other");
  if (e.failure()) return e;
  ShortTerm st;
  if (subspace) st = ShortTerm{w_d.typed_data(), b_d.typed_data(), g.typed_data(), short_term->typed_data()};
  forward(s, zs.typed_data(), bias.typed_data(), peepholes.typed_data(), w_packed.typed_data(), h0.typed_data(),
          c0.typed_data(), masks.typed_data(), resets.typed_data(), decays ? gammas.typed_data() : nullptr,
          blends ? ks.typed_data() : nullptr, st, gates->typed_data(), cs->typed_data(), hs->typed_data());
  return ffi::Error::Success();
}

// The inputs aliased to outputs (gates to dz, γ to dγ, k to dk, S to dS~, g to dg) are written
// through the outputs.
ffi::Error backward_impl(ffi::Buffer<ffi::F32> gates, ffi::Buffer<ffi::F32> cs, ffi::Buffer<ffi::F32> hs,
                         ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0, ffi::Buffer<ffi::F32> masks,
                         ffi::Buffer<ffi::F32> resets, ffi::Buffer<ffi::F32> gammas, ffi::Buffer<ffi::F32> ks,
                         ffi::Buffer<ffi::F32> wt_packed, ffi::Buffer<ffi::F32> peepholes,
                         ffi::Buffer<ffi::F32> dhs, ffi::Buffer<ffi::F32> dh_final, ffi::Buffer<ffi::F32> dc_final,
                         ffi::Buffer<ffi::F32> short_term, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> wdt_packed,
                         ffi::ResultBuffer<ffi::F32> dzs, ffi::ResultBuffer<ffi::F32> d_gammas,
                         ffi::ResultBuffer<ffi::F32> d_ks, ffi::ResultBuffer<ffi::F32> dh0,
                         ffi::ResultBuffer<ffi::F32> dc0, ffi::ResultBuffer<ffi::F32> du,
                         ffi::ResultBuffer<ffi::F32> d_short_term, ffi::ResultBuffer<ffi::F32> dg) {
  auto dims = cs.dimensions();
  if (dims.size() != 3) return check(false, "cs must be T x B x H");
  const Shape s{dims[0], dims[1], dims[2]};
  bool decays = false, blends = false;
  ffi::Error e = check(s.H % kLanes == 0 && elements(gates) == s.T * s.B * s.G() &&
                           elements(hs) == s.T * s.B * s.H && elements(h0) == s.B * s.H &&
                           elements(c0) == s.B * s.H && elements(masks) == s.T * s.B &&
                           elements(resets) == s.T * s.B && time_factor(s, gammas, &decays) &&
                           time_factor(s, ks, &blends) && elements(wt_packed) == s.H * s.G() &&
                           elements(peepholes) == 3 * s.H && elements(dhs) == s.T * s.B * s.H &&
                           elements(dh_final) == s.B * s.H && elements(dc_final) == s.B * s.H &&
                           elements(*dzs) == elements(gates) && elements(*d_gammas) == elements(gammas) &&
                           elements(*d_ks) == elements(ks) && elements(*du) == 3 * s.H,
                       "operand sizes disagree with cs");
  if (e.failure()) return e;
  bool subspace = false;
  e = check(short_term_sizes<ffi::Buffer<ffi::F32>>(s, wdt_packed, nullptr, g, elements(short_term),
                                                    decays || blends, &subspace) &&
                elements(*d_short_term) == elements(short_term) && elements(*dg) == elements(g),
            "T-LSTM's W_d, g and S disagree with cs or with each other");
  if (e.failure()) return e;
  // without aliasing (XLA may copy an aliased input that is still in use) the output starts as the input
  auto start_as = [](const float* in, float* out, int64_t n) { if (in != out) std::copy(in, in + n, out); };
  start_as(gates.typed_data(), dzs->typed_data(), elements(gates));
  if (decays) start_as(gammas.typed_data(), d_gammas->typed_data(), elements(gammas));
  if (blends) start_as(ks.typed_data(), d_ks->typed_data(), elements(ks));
  ShortTerm st;
  if (subspace) {
    start_as(short_term.typed_data(), d_short_term->typed_data(), elements(short_term));
    start_as(g.typed_data(), dg->typed_data(), elements(g));
    st = ShortTerm{wdt_packed.typed_data(), nullptr, dg->typed_data(), d_short_term->typed_data()};
  }
  backward(s, dzs->typed_data(), cs.typed_data(), hs.typed_data(), h0.typed_data(), c0.typed_data(),
           masks.typed_data(), resets.typed_data(), decays ? d_gammas->typed_data() : nullptr,
           blends ? d_ks->typed_data() : nullptr, wt_packed.typed_data(), peepholes.typed_data(), st, dhs.typed_data(),
           dh_final.typed_data(), dc_final.typed_data(), dh0->typed_data(), dc0->typed_data(), du->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LtfLstmForward, forward_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // zs, T x B x 4H (without b)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b, 4H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes u_i, u_f, u_o: 3 x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_h packed, H/16 x H x 4 x 16
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // C0, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // masks, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // resets, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // γ, T x B x H (or 1: no decay)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // k, T x B x H (or 1: no time gate)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_d packed, H/16 x H x 16 (or 1: not T-LSTM)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_d, H (or 1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g(Δt), T x B x H (or 1)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // gates (i, f, g, o activated), T x B x 4H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // C_t, T x B x H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_t, T x B x H
                                  .Ret<ffi::Buffer<ffi::F32>>());  // S_t, T x B x H (or 1)

XLA_FFI_DEFINE_HANDLER_SYMBOL(LtfLstmBackward, backward_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // gates, T x B x 4H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // C_t, T x B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h_t, T x B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // C0, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // masks, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // resets, T x B
                                  .Arg<ffi::Buffer<ffi::F32>>()  // γ, T x B x H (or 1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // k, T x B x H (or 1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_hᵀ packed, H/16 x 4H x 16
                                  .Arg<ffi::Buffer<ffi::F32>>()  // peepholes u_i, u_f, u_o: 3 x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d h_t, T x B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d h_T (final carry), B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d C_T, B x H
                                  .Arg<ffi::Buffer<ffi::F32>>()  // S_t, T x B x H (or 1: not T-LSTM)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // g(Δt), T x B x H (or 1)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // W_dᵀ packed, H/16 x H x 16 (or 1)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dz, T x B x 4H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dγ, as γ
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dk, as k
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d h0, B x H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d C0, B x H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d u, 3 x H
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dS~, as S
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dg, as g
