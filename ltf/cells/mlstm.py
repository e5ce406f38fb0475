"""mLSTM, the matrix-memory LSTM of xLSTM (Beck et al., NeurIPS 2024): per head, a d x d memory
written with an exponential input gate and read with a query, and no recurrent matmul.

With H = heads · d and, per head, q_t, k_t, v_t ∈ R^d:

    [q_t, k_t, v_t, o_t, ĩ_t, f̃_t] = x_t W_x + b       one projection, 4H + 2·heads wide;
                                                         k_t scaled by 1/√d
    m_t  = max(log σ(f̃_t) + m_{t−1}, ĩ_t)              the stabiliser (log scale of the memory)
    i'_t = exp(ĩ_t − m_t),  f'_t = exp(log σ(f̃_t) + m_{t−1} − m_t)
    C_t  = f'_t C_{t−1} + i'_t v_t k_tᵀ                 matrix memory, d x d per head
    n_t  = f'_t n_{t−1} + i'_t k_t                      normaliser state
    h̃_t = C_t q_t / max(|n_tᵀ q_t|, exp(−m_t))
    h_t  = σ(o_t) ⊙ h̃_t                                o_t from x_t alone: outside the recurrence
    (head_norm: h_t = σ(o_t) ⊙ LN(h̃_t), LN per head: zero mean, unit variance over its d entries)

C_t, n_t are held relative to exp(m_t): the unstabilised C^u_t = exp(m_t) C_t. In those terms
h̃_t = C^u_t q_t / max(|n^uᵀ_t q_t|, 1), so h̃ does not depend on m: m only keeps exp() in range
(every exponent above is ≤ 0). Both forms of `ltf.mlstm_scan` compute the same m_t (its
closed form there), so their carries agree too, not only their outputs. The issue writes
C_t = f'C + i' k vᵀ and h̃ = Cᵀq; here C is stored transposed (v kᵀ, C q): the same numbers.
xLSTM's reference code adds ε = 1e-6 to the denominator; ltf does not, since ε in stabilised
units would make h̃ depend on m. The floor exp(−m_t) > 0 keeps h̃ finite (a query orthogonal to
every key reads h̃ = 0) unless ĩ_t is so large that exp(−m_t) underflows (ĩ > ~87 in float32).

The carry. ltf's `LSTMState(c, h)`, with c_BxW = [C (heads·d·d), n (heads·d), m (heads)] packed
(`pack`/`unpack`; C head-major, each head's d x d row-major with rows indexed by v, columns by k),
W = heads·d·d + H + heads, and h_BxH = h_t. A zero carry (`initial_state`, a reset) is C = 0,
n = 0, m = 0: xLSTM's own initial state; with C = n = 0, m only sets the floor's scale, and the
first step's m_1 = max(log σ(f̃_1), ĩ_1) follows. ltf's generic traces report the carry's first
H columns as C (here the first entries of head 0's memory).

Where ltf's cell differs from xLSTM's block: xLSTM projects the input up (factor 2), runs a causal
Conv1D and forms q, k from its output, ĩ, f̃ from [q, k, v], and normalises h̃ per head (group
norm) before the output gate and a down-projection. Here q, k, v, o, ĩ, f̃ are dense maps of
the layer's input, one D x (4H + 2·heads) matmul as the LSTM cells project their gates; the
block's up-projection, Conv1D and skip belong to a block, not to the cell. The per-head norm is
the option `head_norm` (off by default: the results before it ran without), without xLSTM's
learned scale: a per-unit scale of h_t is a scale of the next layer's input rows, which that
layer's weights already learn.

Options: `heads` (H must be a multiple), `form` ("auto" | "sequential" | "chunkwise": how
`ltf.mlstm_scan` runs the layer), `chunk_size` (L, the chunk length of the chunkwise form and
of remat) and `head_norm` (above). Resets, masks and the carried state follow
`ltf.rnn.scan_layer`'s semantics.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells.base import LSTM, Array, LSTMState, Params

FORMS = ("auto", "sequential", "chunkwise")
# xLSTM's forget-gate biases, spread linearly over the heads (see `MLSTM.init`)
FORGET_BIAS_RANGE = (3.0, 6.0)
INPUT_BIAS_STD = 0.1
HEAD_NORM_EPS = 1e-5  # xLSTM's MultiHeadLayerNorm's


def carry_width(heads: int, d_head: int) -> int:
    """W of the packed c: C (heads·d·d), n (heads·d), m (heads)."""
    return heads * d_head * d_head + heads * d_head + heads


def pack(c_BxNxDxD, n_BxNxD, m_BxN) -> Array:
    """[C, n, m] as the carry's c_BxW."""
    batch = c_BxNxDxD.shape[:-3]
    return jnp.concatenate([c_BxNxDxD.reshape(batch + (-1,)), n_BxNxD.reshape(batch + (-1,)), m_BxN], axis=-1)


def unpack(c_BxW, heads: int) -> tuple[Array, Array, Array]:
    """C_BxNxDxD, n_BxNxD, m_BxN from the carry's c_BxW (W = heads·d·d + heads·d + heads)."""
    width = c_BxW.shape[-1]
    # W = N d² + N d + N  =>  d = (−1 + √(1 − 4(1 − W/N))) / 2
    d = int(round((-1 + (1 - 4 * (1 - width / heads)) ** 0.5) / 2))
    if carry_width(heads, d) != width:
        raise ValueError(f"a carry of width {width} is not [C, n, m] of {heads} heads "
                         "(heads·d·d + heads·d + heads).")
    batch = c_BxW.shape[:-1]
    n_c, n_n = heads * d * d, heads * d
    return (c_BxW[..., :n_c].reshape(batch + (heads, d, d)),
            c_BxW[..., n_c:n_c + n_n].reshape(batch + (heads, d)), c_BxW[..., n_c + n_n:])


def split_projection(z_xG, heads: int):
    """q, k, v (…xNxD, k scaled by 1/√d), o (…xH), ĩ, f̃ (…xN) from z = x W_x + b (…x 4H + 2N)."""
    width = z_xG.shape[-1] - 2 * heads
    d_hidden = width // 4
    d = d_hidden // heads
    lead = z_xG.shape[:-1]
    q, k, v, o = (z_xG[..., j * d_hidden:(j + 1) * d_hidden] for j in range(4))
    heads_of = lambda a: a.reshape(lead + (heads, d))  # noqa: E731
    i_pre, f_pre = z_xG[..., width:width + heads], z_xG[..., width + heads:]
    return heads_of(q), heads_of(k) * (d ** -0.5), heads_of(v), o, i_pre, f_pre


def step(c_BxNxDxD, n_BxNxD, m_BxN, q_BxNxD, k_BxNxD, v_BxNxD, i_pre_BxN, f_pre_BxN):
    """One step of the recurrence (k already scaled). Returns (C_t, n_t, m_t), h̃_BxNxD."""
    log_f = jax.nn.log_sigmoid(f_pre_BxN)  # log σ(f̃_t), in log space: no underflow of σ
    m = jnp.maximum(log_f + m_BxN, i_pre_BxN)  # m_t = max(log σ(f̃_t) + m_{t−1}, ĩ_t)
    i_gate = jnp.exp(i_pre_BxN - m)[..., None]  # i'_t = exp(ĩ_t − m_t) ≤ 1
    f_gate = jnp.exp(log_f + m_BxN - m)[..., None]  # f'_t = exp(log σ(f̃_t) + m_{t−1} − m_t) ≤ 1
    n = f_gate * n_BxNxD + i_gate * k_BxNxD  # n_t = f' n_{t−1} + i' k_t
    vk_BxNxDxD = v_BxNxD[..., :, None] * k_BxNxD[..., None, :]  # v_t k_tᵀ
    c = f_gate[..., None] * c_BxNxDxD + i_gate[..., None] * vk_BxNxDxD  # C_t = f' C_{t−1} + i' v_t k_tᵀ
    num = jnp.einsum("...ij,...j->...i", c, q_BxNxD)  # C_t q_t
    den = jnp.maximum(jnp.abs(jnp.sum(n * q_BxNxD, axis=-1)), jnp.exp(-m))  # max(|n_tᵀ q_t|, exp(−m_t))
    return (c, n, m), num / den[..., None]  # h̃_t


def read_out(o_xH, h_tilde_xNxD, head_norm: bool) -> Array:
    """h = σ(o) ⊙ h̃, heads concatenated; with `head_norm` each head's h̃ is first normalised to
    zero mean and unit variance over its d entries (xLSTM's per-head norm, no learned scale)."""
    if head_norm:
        mean = jnp.mean(h_tilde_xNxD, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(h_tilde_xNxD - mean), axis=-1, keepdims=True)
        h_tilde_xNxD = (h_tilde_xNxD - mean) * jax.lax.rsqrt(variance + HEAD_NORM_EPS)
    return jax.nn.sigmoid(o_xH) * h_tilde_xNxD.reshape(o_xH.shape)  # h_t = σ(o_t) ⊙ h̃_t


@dataclasses.dataclass(frozen=True)
class MLSTM(LSTM):
    """xLSTM's mLSTM (Beck et al. 2024); see the module docstring."""

    heads: int = 4
    form: str = "auto"  # how ltf.mlstm_scan runs it: auto | sequential | chunkwise
    chunk_size: int = 64  # L: steps per chunk of the chunkwise form (and of remat)
    head_norm: bool = False  # normalise each head's h̃ before the output gate (xLSTM's block does)

    # z's blocks: q, k, v, o (H each), then ĩ, f̃ (one per head): not G equal blocks of H
    gates: ClassVar[tuple[str, ...]] = ("q", "k", "v", "o", "i", "f")
    # the carry is a matrix memory per head, linear in the state, no recurrent matmul:
    # ltf.mlstm_scan runs the layer (sequentially or chunkwise), not ltf.fast_rnn's matmul scans
    matrix_memory: ClassVar[bool] = True

    def __post_init__(self):
        self.refuse_weight_init("mlstm")
        if self.heads < 1 or self.chunk_size < 1:
            raise ValueError(f"heads={self.heads}, chunk_size={self.chunk_size}: must be positive integers.")
        if self.form not in FORMS:
            raise ValueError(f"form={self.form!r}: allowed values are {FORMS}.")
        if not isinstance(self.head_norm, bool):
            raise ValueError(f"head_norm={self.head_norm!r}: True or False.")
        if self.forget_init != "constant" or self.forget_bias != 1.0:
            raise ValueError("mlstm's forget gate starts from xLSTM's per-head biases (linspace 3 to 6): "
                             "forget_init/forget_bias do not apply; leave them at their defaults.")
        if self.decay:
            raise ValueError("decay=True does not apply to mlstm: GRU-D's decay of the carry is a recurrent "
                             "matmul cell's option; mlstm's forget gate f' is its decay.")
        if self.d_time < 1:
            raise ValueError(f"d_time={self.d_time}: the width of the Δt input must be >= 1.")

    def head_size(self, d_hidden: int) -> int:
        """d = H / heads; fails, naming the config fields, when H is not a multiple of heads."""
        if d_hidden < 1 or d_hidden % self.heads:
            raise ValueError(f"mlstm: d_hidden={d_hidden} must be a positive multiple of heads={self.heads} "
                             "(H = heads·d); change model.d_hidden or model.cell_options.heads.")
        return d_hidden // self.heads

    def init(self, key, d_in: int, d_hidden: int) -> Params:
        """W_x (D x 4H + 2N): q, k, v, o columns LeCun normal, ĩ, f̃ columns zero; b: zero but
        b_ĩ ~ N(0, 0.1²) and b_f̃ = linspace(3, 6) over the heads (xLSTM's mLSTM cell).

        Why: σ(3) = 0.95 to σ(6) = 0.9975, i.e. memories with time scales 1/(1 − f) of about 20 to
        400 steps, one per head (a spread, as chrono initialisation argues), so the matrix
        memory starts by keeping what it wrote and learns what to forget. b_ĩ ≈ 0 gives each write
        weight exp(ĩ) ≈ 1, a small write against memories of 20+ steps, no single step dominating;
        with the gates' weights at zero both gates start input-independent (as xLSTM's do).
        """
        if d_in < 1:
            raise ValueError(f"d_in={d_in}: sizes must be positive.")
        self.head_size(d_hidden)
        k_x, k_i = jax.random.split(key)
        w_qkvo = jax.nn.initializers.lecun_normal()(k_x, (d_in, 4 * d_hidden))
        b_i = INPUT_BIAS_STD * jax.random.normal(k_i, (self.heads,))
        b_f = jnp.linspace(*FORGET_BIAS_RANGE, self.heads, dtype=jnp.float32)
        return {"w_x": jnp.concatenate([w_qkvo, jnp.zeros((d_in, 2 * self.heads))], axis=1),
                "b": jnp.concatenate([jnp.zeros((4 * d_hidden,)), b_i, b_f])}

    def hidden_size(self, params: Params) -> int:
        return (params["b"].shape[0] - 2 * self.heads) // 4

    def initial_state(self, batch_size: int, d_hidden: int, dtype=jnp.float32) -> LSTMState:
        """Zeros: C = 0, n = 0, m = 0 (c_BxW) and h = 0 (h_BxH)."""
        d = self.head_size(d_hidden)
        return LSTMState(c=jnp.zeros((batch_size, carry_width(self.heads, d)), dtype),
                         h=jnp.zeros((batch_size, d_hidden), dtype))

    def recurrent_weight(self, params: Params) -> Array:
        raise NotImplementedError(
                "mlstm has no recurrent weight W_h (its gates read x_t alone, its memory is a matrix): "
                "ltf.fast_rnn's matmul scans do not apply; ltf.rnn.scan_layer runs it with ltf.mlstm_scan.")

    def gate_update(self, params: Params, z_BxG, c_prev_BxW, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """The whole step from z_t = x_t W_x + b and the packed carry: ([C_t, n_t, m_t], h_t)."""
        del params, h_prev_BxH, dt_BxK
        q, k, v, o, i_pre, f_pre = split_projection(z_BxG, self.heads)
        (c, n, m), h_tilde_BxNxD = step(*unpack(c_prev_BxW, self.heads), q, k, v, i_pre, f_pre)
        return pack(c, n, m), read_out(o, h_tilde_BxNxD, self.head_norm)
