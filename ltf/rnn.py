"""The sequence layer: a cell run over time under `jax.lax.scan`, and stacks of such layers.

The h-independent part of every gate (x_t W_x + φ(Δt) W_Δt + b) is projected for all T steps
at once, as one large matmul, before the scan; the scanned body does only the recurrent matmul
h_{t-1} W_h and the elementwise gate math. Inputs and outputs are batch-major (B x T x ...),
the scan runs time-major inside.

A masked step (mask 0, e.g. padding after the end of a shorter sequence) leaves the carry
untouched and emits the carried h, so the final carry of a padded sequence is the carry
after its last real step. A reset (resets 1 at step t: a new sequence starts there, inside the
window) zeroes the carry before step t; no gradient crosses it.

The backward pass is `backward="custom"` (default; `ltf.fast_rnn`: the reverse scan carries only
(dh, dc) and dW_h is one large matmul after it) or "autodiff" (`jax.grad` of the plain scan).

The linear cells (`cell.linear`: `ltf.cells.linear`, h_t = a_t ⊙ h_{t-1} + b_t with a_t, b_t from
the inputs alone) run in `ltf.linear_scan` instead, sequentially or as an associative scan (the
cell's `form`), with the same masks, resets and carried state; `backward` does not apply to them.
So does the mLSTM (`cell.matrix_memory`: `ltf.cells.mlstm`, a d x d memory per head), in
`ltf.mlstm_scan`, sequentially or chunkwise (its `form`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from ltf import fast_rnn, linear_scan, mlstm_scan
from ltf.cells.base import LSTM, LSTMState, Params

BACKWARDS = ("custom", "autodiff")


class TokenInputs(NamedTuple):
    """A first layer's input given as an embedding table and token ids, x_t = embed[tokens_t]:
    the layer then projects it once per vocabulary entry (`project_tokens`), not
    once per token. The same values and gradients as passing embed[tokens]."""

    embed_VxD: jax.Array
    tokens_BxT: jax.Array

    def dense(self):
        """x_BxTxD = embed[tokens]."""
        return self.embed_VxD[self.tokens_BxT]


def project_tokens(cell: LSTM, params: Params, embed_VxD, tokens_TxB, dts_TxBxK):
    """`project(cell, params, embed[tokens], dts)` computed once per vocabulary entry, not once
    per token: the pre-activations x_t W_x of token v are row v of the V x G table E W_x.

    Every cell's `project` is affine in its inputs (x W_x plus terms of Δt and biases), so
        project(x, Δt) = (x W_x) + project(0, Δt),
    and the table is the derivative of `project` along E (a `jax.jvp`: the linear part alone,
    computed as E W_x, with no subtraction); where the rest is the biases alone, it is added to
    the table's V rows, not to the B·T gathered ones. The gradient follows by autodiff: d table is the
    scatter-add of dz over the tokens, then dW_x = Eᵀ d table and dE = d table W_xᵀ, matmuls of
    V rows instead of T·B. Worth it when V < T·B; the caller chooses (`LanguageModel.projection_path`).
    A cell whose `project` is not affine in x would break the identity: `tests/test_fast_rnn.py`
    checks it for every registered cell.
    """
    d_in = embed_VxD.shape[-1]
    dt0_1xK = jnp.zeros((1, dts_TxBxK.shape[-1]), dts_TxBxK.dtype)
    _, table_VxG = jax.jvp(lambda x_VxD: cell.project(params, x_VxD, dt0_1xK),
                           (jnp.zeros_like(embed_VxD),), (embed_VxD,))
    # what does not depend on x (biases, φ(Δt) W_Δt), from one zero input broadcast over the steps
    zero_x = jnp.zeros((1,) * (dts_TxBxK.ndim - 1) + (d_in,), embed_VxD.dtype)
    offsets = cell.project(params, zero_x, dts_TxBxK)
    if all(n == 1 for n in offsets.shape[:-1]):  # the biases alone: into the table's V rows
        return (table_VxG + offsets.reshape(1, -1))[tokens_TxB]
    return table_VxG[tokens_TxB] + offsets


def scan_layer(cell: LSTM, params: Params, xs_BxTxD, dts_BxTxK, mask_BxT=None,
               state: LSTMState | None = None, *, unroll: int = 1, remat: bool = False,
               backward: str = "custom", resets_BxT=None):
    """Runs `cell` over T steps. Returns (final LSTMState, hs_BxTxH).

    Args:
        xs_BxTxD: the inputs, or `TokenInputs(embed, tokens)` to project them per vocabulary entry
            (with `remat` they are looked up and projected per token, as remat recomputes the
            projection from the stored inputs).
        state: the carry to start from (zeros when None); pass a returned final state to
            continue a sequence (stateful truncated BPTT).
        unroll: `lax.scan` unroll factor.
        remat: trade compute for memory on long sequences. With backward="autodiff": recompute
            each step's gates in the backward pass instead of storing them (`jax.checkpoint` of the
            step). With backward="custom", which stores z_t, C_{t-1}, h_t per step without remat:
            store only C_{t-1}, h_t and recompute z_t in the backward pass by two large matmuls
            per chunk of 256 steps, so that pre-activations are never live for all T steps at
            once (see `ltf.fast_rnn`).
        backward: "custom" (`ltf.fast_rnn.recurrence`) or "autodiff" (`jax.grad` of the scan);
            the same values and gradients, the custom one faster on CPU.
        resets_BxT: 1 (or True) where a new sequence starts: the carry is zeroed before that step.

    A linear cell (`cell.linear`) runs in `ltf.linear_scan` in its `form` (sequential or
    parallel), gradients by autodiff, whatever `backward` says; `remat` there runs the layer in
    chunks under `jax.checkpoint` (`ltf.linear_scan.layer`); `unroll` unrolls the sequential form.
    The mLSTM (`cell.matrix_memory`) runs in `ltf.mlstm_scan` likewise (its `form`: sequential or
    chunkwise; `remat`: chunks of `chunk_size` steps under `jax.checkpoint`).
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward={backward!r}: allowed values are {BACKWARDS}.")
    if isinstance(xs_BxTxD, TokenInputs) and remat:
        xs_BxTxD = xs_BxTxD.dense()
    per_vocab = isinstance(xs_BxTxD, TokenInputs)
    dtype = xs_BxTxD.embed_VxD.dtype if per_vocab else xs_BxTxD.dtype
    batch = dts_BxTxK.shape[0]
    if state is None:
        state = cell.initial_state(batch, cell.hidden_size(params), dtype)
    # what the steps read of time, for all T steps at once (the identity for most cells)
    dts_TxBxK = cell.time_features(params, jnp.swapaxes(dts_BxTxK, 0, 1).astype(dtype))
    masks_TxB = None if mask_BxT is None else jnp.swapaxes(mask_BxT, 0, 1)
    resets_TxB = None if resets_BxT is None else jnp.swapaxes(resets_BxT, 0, 1).astype(dtype)
    if cell.linear:  # h_t = a_t ⊙ h_{t-1} + b_t: no recurrent matmul, no custom backward pass
        if per_vocab:
            zs_TxBxG = project_tokens(cell, params, xs_BxTxD.embed_VxD,
                                               jnp.swapaxes(xs_BxTxD.tokens_BxT, 0, 1), dts_TxBxK)
            final, hs_TxBxH = linear_scan.recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state,
                                                     unroll=unroll, resets_TxB=resets_TxB)
        else:
            final, hs_TxBxH = linear_scan.layer(cell, params, jnp.swapaxes(xs_BxTxD, 0, 1), dts_TxBxK,
                                                masks_TxB, state, unroll=unroll, remat=remat,
                                                resets_TxB=resets_TxB)
        return final, jnp.swapaxes(hs_TxBxH, 0, 1)
    if cell.matrix_memory:  # C_t = f'C_{t-1} + i' v kᵀ per head: no recurrent matmul either
        if per_vocab:
            zs_TxBxG = project_tokens(cell, params, xs_BxTxD.embed_VxD,
                                      jnp.swapaxes(xs_BxTxD.tokens_BxT, 0, 1), dts_TxBxK)
            final, hs_TxBxH = mlstm_scan.recurrence(cell, zs_TxBxG, masks_TxB, state, resets_TxB=resets_TxB,
                                                    unroll=unroll)
        else:
            final, hs_TxBxH = mlstm_scan.layer(cell, params, jnp.swapaxes(xs_BxTxD, 0, 1), dts_TxBxK,
                                               masks_TxB, state, resets_TxB=resets_TxB, unroll=unroll,
                                               remat=remat)
        return final, jnp.swapaxes(hs_TxBxH, 0, 1)
    if backward == "custom" and not per_vocab:  # the projection inside (remat recomputes it)
        final, hs_TxBxH = fast_rnn.layer(cell, params, jnp.swapaxes(xs_BxTxD, 0, 1), dts_TxBxK, masks_TxB,
                                         state, unroll=unroll, remat=remat, resets_TxB=resets_TxB)
        return final, jnp.swapaxes(hs_TxBxH, 0, 1)

    # all T at once, outside the scan: from the V x G table for token inputs
    if per_vocab:
        zs_TxBxG = project_tokens(cell, params, xs_BxTxD.embed_VxD,
                                           jnp.swapaxes(xs_BxTxD.tokens_BxT, 0, 1), dts_TxBxK)
    else:
        zs_TxBxG = cell.project(params, jnp.swapaxes(xs_BxTxD, 0, 1), dts_TxBxK)
    if backward == "custom":
        final, hs_TxBxH = fast_rnn.recurrence(cell, params, zs_TxBxG, dts_TxBxK, masks_TxB, state,
                                              unroll=unroll, resets_TxB=resets_TxB)
    else:
        final, hs_TxBxH = fast_rnn.forward(cell, unroll, params, zs_TxBxG, dts_TxBxK, masks_TxB, state,
                                           emit=lambda h, z, c_prev: h, remat=remat, resets_TxB=resets_TxB)
    return final, jnp.swapaxes(hs_TxBxH, 0, 1)


def dropout(rng, x, rate: float, *, locked: bool = False):
    """Inverted dropout. `locked` draws one mask per sequence and feature, shared by every
    time step (variational / locked dropout, Gal & Ghahramani 2016; AWD-LSTM): x is B x T x F."""
    if rate <= 0.0 or rng is None:
        return x
    shape = (x.shape[0], 1, x.shape[2]) if locked else x.shape
    keep = jax.random.bernoulli(rng, 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def scan_stack(cells: Sequence[LSTM], layer_params: Sequence[Params], xs_BxTxD, dts_BxTxK,
               mask_BxT=None, states: Sequence[LSTMState] | None = None, *,
               dropout_rate: float = 0.0, locked_dropout: bool = True, rng=None,
               between_layers=None, unroll: int = 1, remat: bool = False,
               backward: str = "custom", resets_BxT=None):
    """Stacked layers, dropout between them (only when `rng` is given, i.e. in training).

    `between_layers(i, hs_BxTxH) -> hs_BxTxH`, when given, transforms the output of layer i
    before dropout (the model puts attention there). `backward`, `resets_BxT` as in `scan_layer`
    (every layer resets at the same steps). Returns
    (list of final states, hs_BxTxH of the last layer).
    """
    n = len(cells)
    states = [None] * n if states is None else list(states)
    rngs = [None] * n if rng is None else list(jax.random.split(rng, n))
    finals, hs = [], xs_BxTxD
    for i, (cell, params) in enumerate(zip(cells, layer_params)):
        if i > 0:
            hs = dropout(rngs[i], hs, dropout_rate, locked=locked_dropout)
        final, hs = scan_layer(cell, params, hs, dts_BxTxK, mask_BxT, states[i], unroll=unroll,
                               remat=remat, backward=backward, resets_BxT=resets_BxT)
        if between_layers is not None:
            hs = between_layers(i, hs)
        finals.append(final)
    return finals, hs


def with_times(dts_BxTxK, times_BxT=None):
    """Δt with the absolute time of each step as one more, last column (B x T x K+1); the running
    sum of Δt's first column when `times_BxT` is None."""
    if times_BxT is None:
        times_BxT = jnp.cumsum(dts_BxTxK[..., 0], axis=1)
    if times_BxT.shape != dts_BxTxK.shape[:2]:
        raise ValueError(f"times_BxT has shape {times_BxT.shape}; the steps are {dts_BxTxK.shape[:2]} (B x T).")
    return jnp.concatenate([dts_BxTxK, times_BxT[..., None].astype(dts_BxTxK.dtype)], axis=-1)
