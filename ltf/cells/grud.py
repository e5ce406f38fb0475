"""The GRU (Cho et al. 2014) and GRU-D (Che et al., Sci. Rep. 2018), in GRU-D's notation (the reset
gate after the matmul, see below):

    u_t = σ(x_t W_u + h' U_u + b_u)                          update gate
    r_t = σ(x_t W_r + h' U_r + b_r)                          reset gate
    n_t = tanh(x_t W_n + b_n + r_t ⊙ (h' U_n + b_hn))          candidate
    h_t = (1 − u_t) ⊙ h' + u_t ⊙ n_t

with h' = h_{t-1} for `gru` and h' = γ_t ⊙ h_{t-1}, γ_t = exp(−max(0, δ_t W_γ + b_γ)) for `grud`
(GRU-D's hidden decay, `ltf.cells.decay`; δ_t the K columns of the Δt input, the time since
each variable was last observed on PhysioNet). GRU-D's input decay (x̂_t from the last observed
value and the mean) acts on the values before any cell: `ltf.models.SequenceModel(input_decay=True)`.

The reset gate acts after the recurrent matmul, r ⊙ (h' U_n + b_hn): the form of cuDNN, PyTorch's
`nn.GRU` and Keras' `reset_after=True` (after Cho et al.'s arXiv v1), in which the step has one
fused matmul h' [U_u U_r U_n]. Keras' default (arXiv v3) and GRU-D's own Keras code, which is
built on it and rejects `reset_after=True`, apply r before it, (r ⊙ h') U_n, which needs a second
matmul after r; the two forms differ as models (b_hn is scaled by r here), not only in speed.

Layout (the protocol's z_t = zs_t + h' W with one H x G matmul, G = 4H; `gates` names the blocks):

    W_x (D x 3H) = [W_u W_r W_n],   W_h (H x 3H) = [U_u U_r U_n],   b (4H) = [b_u b_r b_n b_hn]
    zs  = [x W_u + b_u,  x W_r + b_r,  x W_n + b_n,  b_hn]          `project`
    W   = [U_u  U_r  0  U_n]  (H x 4H)                               `recurrent_weight`
    z   = zs + h' W = [u's and r's pre-activations, x W_n + b_n, h' U_n + b_hn]

so `gate_update` gets the input and recurrent parts of n apart and forms n = tanh(z_n + r ⊙ z_nh)
itself. The zero block is structural: it is not a parameter, and the custom backward pass of
`ltf.fast_rnn` stays exact: dW = Σ_t h'ᵀ dz_t (H x 4H) is mapped back to W_h through `jax.vjp`
of `recurrent_weight`, which drops the zero block's share. Its price: the matmul is 4/3 of the
H x 3H minimum (x W_n can ride neither in the carry nor in Δt: it needs its own block of z).

The carry is `LSTMState(c, h)` with c = h (a GRU has one state vector): `gate_update` reads h'
alone and returns (h_t, h_t); the decay, masks and resets treat c and h alike, so c stays h
from `initial_state` on (a given initial c is never read). `reads_h_prev`: h_t reads h' directly.

Initialisation as the LSTM's: W_x LeCun normal, W_h orthogonal per block, biases zero (GRU-D's
Keras code: Glorot uniform W_x). There is no forget gate: `forget_init`/`forget_bias` do not apply.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from ltf.cells import decay as decay_lib
from ltf.cells.base import LSTM, Array, Params, split_gates
from ltf.shapes import lead


@dataclasses.dataclass(frozen=True)
class GRU(LSTM):
    """GRU, reset gate after the matmul (see the module docstring); `decay=True` is GRU-D's cell."""

    # z_t's blocks: update, reset, the input part of the candidate, its recurrent part (+ b_hn)
    gates: ClassVar[tuple[str, ...]] = ("u", "r", "n", "n_h")
    reads_h_prev: ClassVar[bool] = True

    def __post_init__(self):
        if self.forget_init != "constant" or self.forget_bias != 1.0:
            raise ValueError(
                    f"{type(self).__name__.lower()} has no forget gate: forget_init/forget_bias do not "
                    "apply; leave them at their defaults or choose a cell with a forget gate.")
        super().__post_init__()

    def init(self, key, d_in: int, d_hidden: int) -> Params:
        """W_x (D x 3H), W_h (H x 3H) from `gate_weights`, b (4H) zero; W_γ, b_γ with decay."""
        if d_in < 1 or d_hidden < 1:
            raise ValueError(f"d_in={d_in}, d_hidden={d_hidden}: sizes must be positive.")
        k_x, k_h, k_decay = jax.random.split(key, 3)
        w_x, w_h = self.gate_weights(k_x, k_h, d_in, d_hidden, 3)
        params = {"w_x": w_x, "w_h": w_h, "b": jnp.zeros((4 * d_hidden,))}  # b: b_u, b_r, b_n, b_hn
        if self.decay:
            params.update(decay_lib.init_hidden_decay(k_decay, self.d_time, d_hidden))
        return params

    def project(self, params: Params, xs, dts) -> Array:
        """zs = [x W_u + b_u, x W_r + b_r, x W_n + b_n, b_hn] for any leading shape: xs_...xD -> zs_...x4H."""
        del dts
        z_x = xs @ params["w_x"]  # ...x3H
        d_hidden = z_x.shape[-1] // 3
        z = jnp.concatenate([z_x, jnp.zeros(z_x.shape[:-1] + (d_hidden,), z_x.dtype)], axis=-1)
        return z + lead(params["b"], z)

    def recurrent_weight(self, params: Params) -> Array:
        """[U_u U_r 0 U_n] (H x 4H): W_h with the structural zero block of x W_n inserted."""
        w_h_Hx3H = params["w_h"]
        d_hidden = w_h_Hx3H.shape[0]
        zero_HxH = jnp.zeros((d_hidden, d_hidden), w_h_Hx3H.dtype)
        return jnp.concatenate([w_h_Hx3H[:, :2 * d_hidden], zero_HxH, w_h_Hx3H[:, 2 * d_hidden:]], axis=1)

    def gate_update(self, params: Params, z_BxG, c_prev_BxH, h_prev_BxH, dt_BxK) -> tuple[Array, Array]:
        """(h_t, h_t) from z_t = zs_t + h' W and h' (after `before_step`); C' is h' and unread."""
        del params, c_prev_BxH, dt_BxK
        h_BxH = gru_update(z_BxG, h_prev_BxH)[-1]
        return h_BxH, h_BxH


def gru_update(z_BxG: Array, h_prev_BxH: Array) -> tuple[Array, Array, Array, Array]:
    """(u, r, n, h_t) of one GRU step from z_t = [z_u, z_r, z_n, z_nh] and h'."""
    z_u, z_r, z_n, z_nh = split_gates(z_BxG, 4)
    u = jax.nn.sigmoid(z_u)  # u_t = σ(x_t W_u + h' U_u + b_u)
    r = jax.nn.sigmoid(z_r)  # r_t = σ(x_t W_r + h' U_r + b_r)
    n = jnp.tanh(z_n + r * z_nh)  # n_t = tanh(x_t W_n + b_n + r_t ⊙ (h' U_n + b_hn))
    h = (1.0 - u) * h_prev_BxH + u * n  # h_t = (1 − u_t) ⊙ h' + u_t ⊙ n_t
    return u, r, n, h


@dataclasses.dataclass(frozen=True)
class GRUD(GRU):
    """GRU-D's recurrent cell (Che et al. 2018): the GRU with the hidden decay h' = γ_t ⊙ h_{t-1}
    on by default. On PhysioNet its Δt is the time since each variable's last observation
    (`task.dt="per_variable"`, `d_time=37`), and its inputs [x̂_t, m_t] come from the model's
    input decay and observation mask (`input_decay=True, use_obs_mask=True`)."""

    decay: bool = True
