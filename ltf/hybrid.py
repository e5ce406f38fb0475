"""Griffin's residual blocks (De et al. 2024): recurrent layers mixed with local attention.

Each of the `n_layers` blocks is, for D = d_hidden,

    x ← x + TemporalMix(RMSNorm(x))                       "r": the recurrent block, "a": local attention
    x ← x + MLP(RMSNorm(x)),  MLP(y) = (GeLU(y W_gate) ⊙ y W_up) W_down     (width e·D, e = mlp_expansion)

and the stack ends with one more RMSNorm. The blocks follow `pattern` cyclically ("rra": two
recurrent blocks, then one of attention, as Griffin). The recurrent block is Griffin's, around any
ltf cell (`rglru` by default, so that `lstm` or `mlstm` can be put in the same block):

    y = ( GeLU(x W_g) ⊙ Cell(Conv1D(x W_b)) ) W_o         Conv1D: causal, depthwise, width `conv_width`

The attention block is `ltf.attention` with dot-product scores over a window of `window` steps
(its local blocks: cost B x T x (C + w), not B x T x T). Griffin's attention is multi-query with
RoPE; ltf's is its single-head "+attention" arm: h̃ = tanh(W_c[h_t, c_t]), so that the
ablation compares one attention with and without recurrence.

Carry (stateful truncated BPTT), per layer: a recurrent block carries its cell's `LSTMState` and
the convolution's last `conv_width − 1` inputs (`conv_BxWxD`, the newest last); an attention block
carries nothing across windows (it sees the current window only). Masked steps enter the
convolution as zeros and leave its carried inputs as they were; a reset (resets_BxT) zeroes the
cell's carry and keeps the convolution from reading across it. Outputs at masked steps are
finite but meaningless (mask them downstream), as with `ltf.attention`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ltf import attention
from ltf.cells.base import LSTM
from ltf.cells.registry import make_cell
from ltf.rnn import TokenInputs, dropout, scan_layer, with_times
from ltf.shapes import dense, dense_init, lead

KINDS = {"r": "recurrent", "a": "attention"}
RMS_EPS = 1e-6


def rms_norm(scale_D, x_BxTxD):
    """x / RMS(x) · scale over the last axis (Zhang & Sennrich 2019)."""
    wide = x_BxTxD.astype(jnp.promote_types(x_BxTxD.dtype, jnp.float32))  # bfloat16 inputs: the mean in float32
    mean_square = jnp.mean(jnp.square(wide), axis=-1, keepdims=True)
    return (x_BxTxD * jax.lax.rsqrt(mean_square + RMS_EPS).astype(x_BxTxD.dtype)) * lead(scale_D, x_BxTxD)


def causal_conv(params, u_BxTxD, tail_BxWxD, mask_BxT=None, resets_BxT=None):
    """Depthwise causal convolution over time, out_t = b + Σ_k w_k ⊙ u_{t−k} (k = 0 .. W), with the
    W = conv_width − 1 inputs before the window from `tail_BxWxD`. Returns (out_BxTxD, new tail).

    Masked steps count as zero inputs and are not carried; no output reads an input from before a
    reset at or before its own step. The new tail is the last W real inputs since the last reset
    (fewer: zeros in front)."""
    w_KxD = params["w"]  # K = W + 1 taps, w_KxD[0] on the current input
    n_tail = tail_BxWxD.shape[1]
    B, T, _ = u_BxTxD.shape
    real_BxT = jnp.ones((B, T), bool) if mask_BxT is None else mask_BxT.astype(bool)
    seg_BxT = jnp.zeros((B, T), jnp.int32) if resets_BxT is None else jnp.cumsum(resets_BxT.astype(jnp.int32), 1)
    ext_BxSxD = jnp.concatenate([tail_BxWxD, jnp.where(real_BxT[..., None], u_BxTxD, 0)], axis=1)  # S = W + T
    ext_seg_BxS = jnp.concatenate([jnp.zeros((B, n_tail), jnp.int32), seg_BxT], axis=1)
    out_BxTxD = jnp.broadcast_to(lead(params["b"], u_BxTxD), u_BxTxD.shape).astype(u_BxTxD.dtype)
    for k in range(n_tail + 1):  # K is small (Griffin: 4): one shifted slice per tap
        tap_BxTxD = ext_BxSxD[:, n_tail - k: n_tail - k + T]
        same_segment = (ext_seg_BxS[:, n_tail - k: n_tail - k + T] == seg_BxT)[..., None]
        out_BxTxD = out_BxTxD + lead(w_KxD[k], tap_BxTxD) * jnp.where(same_segment, tap_BxTxD, 0)
    # the new tail: the last W carried-or-real inputs in the last segment, the newest last
    ext_real_BxS = jnp.concatenate([jnp.ones((B, n_tail), bool), real_BxT], axis=1)
    ext_real_BxS &= ext_seg_BxS == ext_seg_BxS[:, -1:]
    from_end_BxS = jnp.cumsum(ext_real_BxS[:, ::-1].astype(jnp.int32), axis=1)[:, ::-1]  # real inputs at ≥ j
    slot_BxSxW = ext_real_BxS[..., None] & (from_end_BxS[..., None] == (n_tail - jnp.arange(n_tail))[None, None])
    new_tail_BxWxD = jnp.einsum("bsw,bsd->bwd", slot_BxSxW.astype(u_BxTxD.dtype), ext_BxSxD)
    return out_BxTxD, new_tail_BxWxD


@dataclasses.dataclass(frozen=True)
class ResidualStack:
    """Griffin-style residual blocks; the same interface as `ltf.models.RecurrentStack`."""

    cell: str
    d_in: int
    d_hidden: int
    n_layers: int = 3
    pattern: str = "rra"
    window: int = 64
    conv_width: int = 4
    mlp_expansion: int = 3
    cell_options: tuple[tuple[str, Any], ...] = ()
    dropout: float = 0.0
    locked_dropout: bool = True
    unroll: int = 1
    remat: bool = False
    backward: str = "custom"

    def __post_init__(self):
        for name in ("d_in", "d_hidden", "n_layers", "window", "conv_width", "mlp_expansion"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}={value!r}: must be a positive integer.")
        if not self.pattern or set(self.pattern) - set(KINDS):
            kinds = ", ".join(f"{k!r} ({v})" for k, v in KINDS.items())
            raise ValueError(f"model.pattern={self.pattern!r}: a string of {kinds}, "
                             "e.g. 'rra' (Griffin: two recurrent blocks, then one of local attention).")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout}: must be in [0, 1).")
        self.cells  # builds and validates the cell now

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.pattern[i % len(self.pattern)] for i in range(self.n_layers))

    @property
    def cells(self) -> tuple[LSTM, ...]:
        """The cell of each recurrent block, in order."""
        cell = make_cell(self.cell, **dict(self.cell_options))
        return (cell,) * self.kinds.count("r")

    def init(self, key) -> dict:
        D, E = self.d_hidden, self.d_hidden * self.mlp_expansion
        keys = iter(jax.random.split(key, 1 + 8 * self.n_layers))
        params: dict = {"norm_out": jnp.ones((D,))}
        if self.d_in != D:
            params["in"] = dense_init(next(keys), self.d_in, D)
        cell = make_cell(self.cell, **dict(self.cell_options))
        for i, kind in enumerate(self.kinds):
            block = {"norm_mix": jnp.ones((D,)), "norm_mlp": jnp.ones((D,)),
                     "mlp": {"gate": dense_init(next(keys), D, E), "up": dense_init(next(keys), D, E),
                             "down": dense_init(next(keys), E, D)}}
            if kind == "r":
                # the convolution starts as the identity (w_0 = 1): the block begins as the plain
                # cell on x W_b and learns what to mix in from the previous steps
                block["mix"] = {"gate": dense_init(next(keys), D, D), "branch": dense_init(next(keys), D, D),
                                "conv": {"w": jnp.zeros((self.conv_width, D)).at[0].set(1.0),
                                         "b": jnp.zeros((D,))},
                                "cell": cell.init(next(keys), D, D), "out": dense_init(next(keys), D, D)}
            else:
                block["mix"] = attention.init(next(keys), D, score="dot")
            params[f"block_{i}"] = block
        return params

    def initial_state(self, batch_size: int, dtype=jnp.float32) -> list[dict]:
        cells = iter(self.cells)
        return [{"cell": next(cells).initial_state(batch_size, self.d_hidden, dtype),
                 "conv_BxWxD": jnp.zeros((batch_size, self.conv_width - 1, self.d_hidden), dtype)}
                if kind == "r" else {} for kind in self.kinds]

    def apply(self, params, xs_BxTxD, dts_BxTxK, mask_BxT=None, states=None, *, dropout_rng=None,
              resets_BxT=None, last_only: bool = False, times_BxT=None):
        """Returns (final states, one per block; hs_BxTxD after the last norm), as
        `RecurrentStack.apply` does (`last_only`: hs_Bx1xD, the last step; computed whole here)."""
        if resets_BxT is not None and "a" in self.kinds:
            raise ValueError("resets inside a window with attention blocks (model.pattern="
                             f"{self.pattern!r}): attention would look across the reset; not supported.")
        if isinstance(xs_BxTxD, TokenInputs):
            xs_BxTxD = xs_BxTxD.dense()
        training = dropout_rng is not None
        cells = [cell if training else cell.for_evaluation() for cell in self.cells]
        if any(cell.uses_times for cell in cells):
            dts_BxTxK = with_times(dts_BxTxK, times_BxT)
        states = self.initial_state(xs_BxTxD.shape[0], xs_BxTxD.dtype) if states is None else list(states)
        n_rngs = 2 * self.n_layers
        rngs = [None] * n_rngs if dropout_rng is None else list(jax.random.split(dropout_rng, n_rngs))
        x = dense(params["in"], xs_BxTxD) if "in" in params else xs_BxTxD
        cells, finals = iter(cells), []
        for i, kind in enumerate(self.kinds):
            p = params[f"block_{i}"]
            y = rms_norm(p["norm_mix"], x)
            if kind == "r":
                m = p["mix"]
                gate = jax.nn.gelu(dense(m["gate"], y))
                u, conv_tail = causal_conv(m["conv"], dense(m["branch"], y), states[i]["conv_BxWxD"],
                                           mask_BxT, resets_BxT)
                cell_final, h = scan_layer(next(cells), m["cell"], u, dts_BxTxK, mask_BxT, states[i]["cell"],
                                           unroll=self.unroll, remat=self.remat, backward=self.backward,
                                           resets_BxT=resets_BxT)
                mix = dense(m["out"], gate * h)
                finals.append({"cell": cell_final, "conv_BxWxD": conv_tail})
            else:
                mix = attention.apply(p["mix"], y, mask_BxT, score="dot", window=self.window)
                finals.append({})
            x = x + dropout(rngs[2 * i], mix, self.dropout, locked=self.locked_dropout)
            y = rms_norm(p["norm_mlp"], x)
            mlp = p["mlp"]
            y = dense(mlp["down"], jax.nn.gelu(dense(mlp["gate"], y)) * dense(mlp["up"], y))
            x = x + dropout(rngs[2 * i + 1], y, self.dropout, locked=self.locked_dropout)
        hs_BxTxD = rms_norm(params["norm_out"], x)
        return finals, (hs_BxTxD[:, -1:] if last_only else hs_BxTxD)

