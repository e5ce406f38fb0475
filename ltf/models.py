"""Models built from the cells, the scanned layers and attention.

  RecurrentStack  stacked layers of one cell kind, optional attention after one layer
  ResidualStack   Griffin's residual blocks of a cell and local attention (`ltf.hybrid`)
  LanguageModel   tokens -> embedding -> the stack -> dropout -> logits (weights tied or not)
  SequenceModel   values (GRU-D's input decay) (+ observation mask) + Δt -> the stack -> a head

`make_stack(d_in, block=...)` builds either stack; both have the same init / apply interface.

Every model is a frozen dataclass of plain values (hashable, so it can be a static argument
of `jax.jit`) with pure `init(key) -> params` and `apply(params, ...)`. Parameters are a plain
dict of arrays: `jax.vmap(model.init)(keys)` gives K seeds at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ltf import attention
from ltf.cells import decay
from ltf.cells.base import LSTM, LSTMState
from ltf.cells.registry import make_cell
from ltf.hybrid import ResidualStack
from ltf.rnn import TokenInputs, dropout, scan_stack, with_times
from ltf.shapes import dense, dense_init

HEADS = ("per_step", "last", "attention_pool")
INPUT_PROJECTIONS = ("auto", "per_vocab", "per_token")


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    """The "+attention" arm: attention of h_t over h_{i<=t} after layer `layer` (-1: last)."""

    layer: int = -1
    score: str = "additive"  # "additive" vᵀtanh(W_a[h_t, h_i] + b_a) or "dot" (scaled)
    normaliser: str = "softmax"  # softmax | sparsemax | entmax15 | topk
    window: int | None = None  # attend to i ∈ [t − window, t] only
    top_k: int | None = None
    d_attn: int | None = None  # defaults to d_hidden
    query_chunk: int | None = None  # bound memory of additive scores: B x chunk x T x A

    def apply_options(self) -> dict:
        return dict(score=self.score, normaliser=self.normaliser, window=self.window,
                    top_k=self.top_k, query_chunk=self.query_chunk)


@dataclasses.dataclass(frozen=True)
class RecurrentStack:
    """`n_layers` layers of the cell `cell` (options `cell_options`, a tuple of (name, value))."""

    cell: str
    d_in: int
    d_hidden: int
    n_layers: int = 1
    cell_options: tuple[tuple[str, Any], ...] = ()
    attention: AttentionSpec | None = None
    dropout: float = 0.0
    locked_dropout: bool = True
    unroll: int = 1
    remat: bool = False
    backward: str = "custom"  # "custom" (ltf.fast_rnn: dW_h as one matmul) or "autodiff"

    def __post_init__(self):
        for name in ("d_in", "d_hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive integer.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: must be in [0, 1).")
        if self.attention is not None and not -self.n_layers <= self.attention.layer < self.n_layers:
            raise ValueError(f"attention.layer={self.attention.layer}: the model has "
                             f"{self.n_layers} layers (use 0..{self.n_layers - 1}, or -1 for the last).")
        self.cells  # builds and validates the cells now, not at the first apply

    @property
    def cells(self) -> tuple[LSTM, ...]:
        cell = make_cell(self.cell, **dict(self.cell_options))
        return (cell,) * self.n_layers

    def running(self, dts_BxTxK, times_BxT=None, *, training: bool):
        """(cells, Δt) as the layers run them: the cells as `cell.for_evaluation()` outside
        training, and Δt with the absolute times as its last column when a cell reads them
        (`with_times`)."""
        cells = self.cells if training else tuple(cell.for_evaluation() for cell in self.cells)
        if any(cell.uses_times for cell in cells):
            dts_BxTxK = with_times(dts_BxTxK, times_BxT)
        return cells, dts_BxTxK

    @property
    def attention_layer(self) -> int | None:
        return None if self.attention is None else self.attention.layer % self.n_layers

    def init(self, key) -> dict:
        keys = jax.random.split(key, self.n_layers + 1)
        params = {
            f"layer_{i}": cell.init(keys[i], self.d_in if i == 0 else self.d_hidden, self.d_hidden)
            for i, cell in enumerate(self.cells)
        }
        if self.attention is not None:
            params["attention"] = attention.init(keys[-1], self.d_hidden, self.attention.d_attn,
                                                 score=self.attention.score)
        return params

    def initial_state(self, batch_size: int, dtype=jnp.float32) -> list[LSTMState]:
        return [cell.initial_state(batch_size, self.d_hidden, dtype) for cell in self.cells]

    def apply(self, params, xs_BxTxD, dts_BxTxK, mask_BxT=None, states=None, *, dropout_rng=None,
              resets_BxT=None, last_only: bool = False, times_BxT=None):
        """Returns (final states, one per layer; hs_BxTxH of the last layer). `resets_BxT`: 1
        where a new sequence starts inside the window (`ltf.rnn.scan_layer`). `last_only`: return
        the last step of the last layer alone (hs_Bx1xH); attention there then runs one query
        instead of T (`ltf.attention.apply`), the same value.

        A dropout rng means training; without one the cells run as `cell.for_evaluation()`.
        `times_BxT`: the absolute time of each step, for the cells that read it (`uses_times`),
        appended to their Δt input as its last column; when None, the window's own clock, the
        running sum of Δt's first column (text: 1, 2, ..., T in every window)."""
        if resets_BxT is not None and self.attention is not None:
            raise ValueError("resets inside a window with attention: attention would look across the "
                             "reset; not supported (give each sequence its own row instead).")

        def attend(i, hs_BxTxH):
            last = last_only and i == self.n_layers - 1
            if i == self.attention_layer:
                return attention.apply(params["attention"], hs_BxTxH, mask_BxT, last_only=last,
                                       **self.attention.apply_options())
            return hs_BxTxH[:, -1:] if last else hs_BxTxH

        cells, dts_BxTxK = self.running(dts_BxTxK, times_BxT, training=dropout_rng is not None)
        layer_params = [params[f"layer_{i}"] for i in range(self.n_layers)]
        return scan_stack(cells, layer_params, xs_BxTxD, dts_BxTxK, mask_BxT, states,
                          dropout_rate=self.dropout, locked_dropout=self.locked_dropout,
                          rng=dropout_rng, between_layers=attend, unroll=self.unroll,
                          remat=self.remat, backward=self.backward, resets_BxT=resets_BxT)


BLOCKS = ("stack", "residual")


def make_stack(d_in: int, block: str = "stack", **options: Any) -> "RecurrentStack | ResidualStack":
    """The layers between input and head: "stack", `RecurrentStack` (stacked cells, +attention
    between them), or "residual", `ltf.hybrid.ResidualStack` (Griffin's residual blocks of the
    cell and local attention: options pattern, window, conv_width, mlp_expansion). cell_options
    may be a mapping; it is stored as a hashable tuple."""
    options["cell_options"] = tuple(sorted(dict(options.get("cell_options", ())).items()))
    if block == "stack":
        return RecurrentStack(d_in=d_in, **options)
    if block == "residual":
        if options.pop("attention", None) is not None:
            raise ValueError("model.attention (the +attention arm) applies to model.block='stack'; the residual "
                             "blocks have their own local attention: put 'a' in model.pattern.")
        return ResidualStack(d_in=d_in, **options)
    raise ValueError(f"model.block={block!r}: allowed values are {BLOCKS}.")


def is_gate_bias(path) -> bool:
    """Whether a parameter's key path is a recurrent layer's gate bias, `stack/layer_k/b`."""
    keys = [getattr(k, "key", None) for k in path]
    return len(keys) == 3 and keys[0] == "stack" and str(keys[1]).startswith("layer_") and keys[2] == "b"


def gate_bias_mask(params):
    """True at the gate biases of the recurrent layers (`is_gate_bias`), False elsewhere."""
    return jax.tree_util.tree_map_with_path(lambda path, _: is_gate_bias(path), params)


@dataclasses.dataclass(frozen=True)
class LanguageModel:
    """Embedding -> stacked recurrent layers (+attention) -> dropout -> output projection.

    `tie_weights` uses the embedding matrix as the output projection (Press & Wolf 2017;
    needs d_embed == d_hidden). Dropout (rate `stack.dropout`) applies to the embeddings,
    between layers and before the projection, only when a dropout rng is given.

    `input_projection`: how the first layer gets x_t W_x. "per_token" multiplies the B·T looked-up
    embeddings; "per_vocab" gathers rows of the V x G table E W_x (`ltf.rnn.project_tokens`:
    the same values and gradients, V rows of matmul instead of B·T); "auto" (default) takes
    per_vocab when V < B·T. Per vocab applies only when nothing stands between the lookup and the
    layer: no embedding dropout in this call (evaluation, or dropout 0) and no remat
    (`projection_path` says which runs).
    """

    vocab_size: int
    d_embed: int
    stack: RecurrentStack | ResidualStack
    tie_weights: bool = False
    init_uniform: float = 0.0  # > 0: every parameter ~ U[-s, s] instead (Zaremba et al. 2014: s = 0.1)
    input_projection: str = "auto"  # auto | per_vocab | per_token (see above)
    # Zaremba's Lua LSTM: each gate has two biases (of its input and of its recurrent Linear), so
    # the gate bias starts as the sum of two U[-s, s] draws; `ltf.optim` steps it as the pair.
    two_gate_biases: bool = False

    @classmethod
    def build(cls, *, vocab_size: int, d_embed: int, tie_weights: bool = False, init_uniform: float = 0.0,
              input_projection: str = "auto", two_gate_biases: bool = False, **stack) -> "LanguageModel":
        stack = make_stack(d_embed, **stack)
        return cls(vocab_size=vocab_size, d_embed=d_embed, stack=stack, tie_weights=tie_weights,
                   init_uniform=init_uniform, input_projection=input_projection, two_gate_biases=two_gate_biases)

    def __post_init__(self):
        if self.vocab_size < 1 or self.d_embed < 1:
            raise ValueError(f"vocab_size={self.vocab_size}, d_embed={self.d_embed}: must be positive.")
        if self.tie_weights and self.d_embed != self.stack.d_hidden:
            raise ValueError(f"tie_weights=True needs d_embed == d_hidden (got {self.d_embed} and "
                             f"{self.stack.d_hidden}); set both to the same size or untie.")
        if not self.init_uniform >= 0:
            raise ValueError(f"init_uniform={self.init_uniform}: must be >= 0 (0: the default initialisers).")
        if self.input_projection not in INPUT_PROJECTIONS:
            raise ValueError(f"input_projection={self.input_projection!r}: allowed values are {INPUT_PROJECTIONS}.")
        if self.two_gate_biases and not (self.init_uniform > 0 and isinstance(self.stack, RecurrentStack)):
            raise ValueError("two_gate_biases=True is Zaremba et al.'s parameterisation: it needs init_uniform > 0 "
                             "(both biases ~ U[-s, s]) and the plain stack (block='stack').")

    def projection_path(self, n_tokens: int, *, training: bool) -> str:
        """"per_vocab" or "per_token": how `apply` projects the embeddings of a call with n_tokens
        (B·T) tokens, in training (embedding dropout applies) or not."""
        embedding_dropout = training and self.stack.dropout > 0
        if self.input_projection == "per_token" or embedding_dropout or self.stack.remat:
            return "per_token"
        if self.input_projection == "per_vocab" or self.vocab_size < n_tokens:
            return "per_vocab"
        return "per_token"

    def init(self, key) -> dict:
        k_embed, k_stack, k_out = jax.random.split(key, 3)
        params = {
            "embed": jax.random.normal(k_embed, (self.vocab_size, self.d_embed)) * self.d_embed ** -0.5,
            "stack": self.stack.init(k_stack),
        }
        if self.tie_weights:
            params["out"] = {"b": jnp.zeros((self.vocab_size,))}
        else:
            params["out"] = dense_init(k_out, self.stack.d_hidden, self.vocab_size)
        if self.init_uniform > 0:  # the classic recipe: biases and added weights too
            leaves, treedef = jax.tree.flatten(params)
            keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
            s = self.init_uniform
            leaves = [jax.random.uniform(k, x.shape, x.dtype, -s, s) for k, x in zip(keys, leaves)]
            params = jax.tree.unflatten(treedef, leaves)
        if self.two_gate_biases:  # b = b_x + b_h, the second drawn like the first
            k_second, s = jax.random.fold_in(key, 2), self.init_uniform
            for i in range(self.stack.n_layers):
                layer = params["stack"][f"layer_{i}"]
                layer["b"] = layer["b"] + jax.random.uniform(jax.random.fold_in(k_second, i), layer["b"].shape,
                                                             layer["b"].dtype, -s, s)
        return params

    def initial_state(self, batch_size: int) -> list[LSTMState]:
        return self.stack.initial_state(batch_size)

    def apply(self, params, tokens_BxT, dts_BxT=None, mask_BxT=None, states=None, *,
              dropout_rng=None, times_BxT=None):
        """Returns (logits_BxTxV, final states). Δt defaults to ones (text has no time);
        `times_BxT` as in `RecurrentStack.apply`."""
        rng_in, rng_stack, rng_out = (None,) * 3 if dropout_rng is None else jax.random.split(dropout_rng, 3)
        rate, locked = self.stack.dropout, self.stack.locked_dropout
        if self.projection_path(tokens_BxT.size, training=dropout_rng is not None) == "per_vocab":
            xs_BxTxE = TokenInputs(params["embed"], tokens_BxT)
        else:
            xs_BxTxE = dropout(rng_in, params["embed"][tokens_BxT], rate, locked=locked)
        if dts_BxT is None:
            dts_BxT = jnp.ones(tokens_BxT.shape, params["embed"].dtype)
        states, hs_BxTxH = self.stack.apply(params["stack"], xs_BxTxE, dts_BxT[..., None], mask_BxT,
                                            states, dropout_rng=rng_stack, times_BxT=times_BxT)
        hs_BxTxH = dropout(rng_out, hs_BxTxH, rate, locked=locked)
        w_out = params["embed"].T if self.tie_weights else params["out"]["w"]
        logits_BxTxV = dense({"w": w_out, "b": params["out"]["b"]}, hs_BxTxH)
        return logits_BxTxV, states


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """Real-valued inputs (values, observation mask, Δt) -> stacked layers -> a head.

    head: "per_step" (an output at every step: forecasting, per-step classes or multi-label),
    "last" (one output per sequence from the last valid step) or "attention_pool" (one output
    per sequence from a softmax-weighted mean of the valid steps' h; not causal by design).

    input_decay: GRU-D's input decay (Che et al. 2018; `ltf.cells.decay.input_decay`), any cell:
    the first layer reads x̂_t = m_t ⊙ x_t + (1 − m_t) ⊙ (γx_t ⊙ x_last_t + (1 − γx_t) ⊙ x̄) for
    the values, γx_t = exp(−max(0, w_γx ⊙ δ_t + b_γx)), w_γx diagonal (params["input_decay"]). δ_t is the Δt
    input, which must have one column per variable (the time since each was last observed: the
    physionet task's dt="per_variable"); x_last_t is the last value observed at or before step t
    in this call's window (from the values and the observation mask, steps with mask 0 and
    observations before a reset not counting); x̄ = 0, the training split's mean in the model's
    units, since the series data standardise each variable by the training split's mean and std.
    A carried state does not carry x_last: each call starts its forward fill afresh, at x̄.
    With use_obs_mask the first layer reads [x̂_t, m_t], GRU-D's inputs.
    """

    d_values: int
    d_out: int
    stack: RecurrentStack | ResidualStack
    head: str = "per_step"
    use_obs_mask: bool = False  # concatenate the observation mask to the values
    input_decay: bool = False  # GRU-D's input decay of the values toward x̄ = 0 (see above)
    d_static: int = 0  # per-sequence features (PhysioNet's age, ICU type, ...) beside h into the head

    @classmethod
    def build(cls, *, d_values: int, d_out: int, head: str = "per_step", use_obs_mask: bool = False,
              input_decay: bool = False, d_static: int = 0, **stack) -> "SequenceModel":
        d_in = d_values * (2 if use_obs_mask else 1)
        return cls(d_values=d_values, d_out=d_out, head=head, use_obs_mask=use_obs_mask,
                   input_decay=input_decay, d_static=d_static,
                   stack=make_stack(d_in, **stack))

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r}: allowed values are {HEADS}.")
        if self.d_values < 1 or self.d_out < 1:
            raise ValueError(f"d_values={self.d_values}, d_out={self.d_out}: must be positive.")
        if self.d_static < 0 or (self.d_static and self.head == "per_step"):
            raise ValueError(f"d_static={self.d_static}: static features go into a per-sequence head "
                             "('last' or 'attention_pool'), and their number is >= 0.")

    def init(self, key) -> dict:
        k_stack, k_out, k_pool = jax.random.split(key, 3)
        params = {"stack": self.stack.init(k_stack),
                  "out": dense_init(k_out, self.stack.d_hidden + self.d_static, self.d_out)}
        if self.head == "attention_pool":
            params["pool"] = dense_init(k_pool, self.stack.d_hidden, 1)
        if self.input_decay:  # its own key: the other parameters stay those of the model without it
            params["input_decay"] = decay.init_input_decay(jax.random.fold_in(key, 1), self.d_values)
        return params

    def initial_state(self, batch_size: int) -> list[LSTMState]:
        return self.stack.initial_state(batch_size)

    def apply(self, params, values_BxTxF, dts_BxTxK=None, mask_BxT=None, obs_mask_BxTxF=None,
              states=None, *, dropout_rng=None, resets_BxT=None, times_BxT=None, static_BxS=None):
        """Returns (outputs, final states): outputs_BxTxO for "per_step", else outputs_BxO.
        `times_BxT` as in `RecurrentStack.apply`; `static_BxS` (S = d_static) joins the pooled h
        in the head: out = W [h, static] + b."""
        xs = values_BxTxF
        if self.input_decay:
            xs = self.decayed_values(params, values_BxTxF, dts_BxTxK, mask_BxT, obs_mask_BxTxF, resets_BxT)
        if self.use_obs_mask:
            if obs_mask_BxTxF is None:
                raise ValueError("use_obs_mask=True: pass obs_mask_BxTxF (1 where a value was observed).")
            xs = jnp.concatenate([xs, obs_mask_BxTxF.astype(values_BxTxF.dtype)], axis=-1)
        if dts_BxTxK is None:
            dts_BxTxK = jnp.ones(xs.shape[:2] + (1,), xs.dtype)
        rng_stack, rng_out = (None, None) if dropout_rng is None else jax.random.split(dropout_rng)
        # The "last" head reads one step: the stack computes attention for that query alone.
        states, hs_BxTxH = self.stack.apply(params["stack"], xs, dts_BxTxK, mask_BxT, states,
                                            dropout_rng=rng_stack, resets_BxT=resets_BxT,
                                            last_only=self.head == "last", times_BxT=times_BxT)
        hs_BxTxH = dropout(rng_out, hs_BxTxH, self.stack.dropout, locked=self.stack.locked_dropout)
        if mask_BxT is None:
            mask_BxT = jnp.ones(hs_BxTxH.shape[:2], hs_BxTxH.dtype)
        if self.head == "per_step":
            pooled = hs_BxTxH
        elif self.head == "last":
            # A masked step re-emits the carried h, so the last step holds the last valid h.
            pooled = hs_BxTxH[:, -1]  # hs is B x 1 x H here (last_only)
        else:  # attention pooling over the valid steps
            scores_BxT = dense(params["pool"], hs_BxTxH)[..., 0]
            scores_BxT = jnp.where(mask_BxT > 0, scores_BxT, -1e30)
            weights_BxT = jax.nn.softmax(scores_BxT, axis=-1)
            pooled = jnp.einsum("bt,bth->bh", weights_BxT, hs_BxTxH)
        if self.d_static:
            if static_BxS is None or static_BxS.shape != pooled.shape[:1] + (self.d_static,):
                got = None if static_BxS is None else static_BxS.shape
                raise ValueError(f"d_static={self.d_static}: pass static_BxS of shape "
                                 f"{pooled.shape[:1] + (self.d_static,)}; got {got}.")
            pooled = jnp.concatenate([pooled, static_BxS.astype(pooled.dtype)], axis=-1)
        return dense(params["out"], pooled), states

    def decayed_values(self, params, values_BxTxF, dts_BxTxF, mask_BxT=None, obs_mask_BxTxF=None,
                       resets_BxT=None):
        """x̂_BxTxF, GRU-D's input decay of the values (see the class docstring), x̄ = 0."""
        if obs_mask_BxTxF is None:
            raise ValueError("input_decay=True: pass obs_mask_BxTxF (1 where a value was observed).")
        if dts_BxTxF is None or dts_BxTxF.shape[-1] != self.d_values:
            got = "no Δt" if dts_BxTxF is None else f"Δt with {dts_BxTxF.shape[-1]} column(s)"
            raise ValueError(
                    f"input_decay=True needs Δt with one column per variable ({self.d_values}: the time since "
                    f"each variable was last observed, e.g. the physionet task's dt='per_variable'); got {got}.")
        observed_BxTxF = obs_mask_BxTxF > 0
        if mask_BxT is not None:  # an observation at a step with mask 0 is no observation
            observed_BxTxF = observed_BxTxF & (mask_BxT[..., None] > 0)
        x_last_BxTxF = decay.last_observed(values_BxTxF, observed_BxTxF, resets_BxT)
        return decay.input_decay(params["input_decay"], values_BxTxF, observed_BxTxF,
                                 dts_BxTxF.astype(values_BxTxF.dtype), x_last_BxTxF)
