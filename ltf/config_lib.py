"""Helpers for `configs/*.py`: named choices in the config argument, validation, model building.

A config file's `get_config(arg)` receives the text after the colon in
`--config configs/tlstm_lm.py:cell=adaptive,smoke`; `parse_arg` turns it into a dict of
choices (a bare word is a flag set to True) and rejects names the file does not offer.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

from ltf import attention
from ltf.cells.registry import CELLS, make_cell
from ltf.models import AttentionSpec, LanguageModel, SequenceModel
from ltf.rnn import BACKWARDS

# Cell options the config exposes; None means "the cell's default" (and is never passed on).
CELL_OPTION_TYPES = {
    "forget_init": str, "forget_bias": float, "chrono_t_max": float,
    "time_transform": str, "adaptive": bool, "peepholes": bool, "d_time": int, "decay": bool,
    "weight_init": str, "weight_std": float,
    # phased (Neil et al. 2016)
    "leak": float, "r_on_init": float, "learn_r_on": bool, "period_init_min": float, "period_init_max": float,
    "time_params": str,
    # the linear cells (ltf.cells.linear): how ltf.linear_scan runs them; linear_decay's initial time scales
    "form": str, "timescale_min": float, "timescale_max": float, "ring_min": float, "ring_max": float,
    # mlstm (ltf.cells.mlstm; `form` too: sequential | chunkwise): heads (d_hidden a multiple), its chunk
    # length, xLSTM's per-head normalisation of h̃
    "heads": int, "chunk_size": int, "head_norm": bool,
}
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
    """'cell=adaptive,smoke' -> {cell: 'adaptive', smoke: True, <other defaults>}."""
    choices = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        name, _, value = item.partition("=")
        if name not in defaults:
            raise ValueError(f"config argument {name!r}: unknown choice; this config offers "
                             f"{sorted(defaults)} (e.g. 'configs/x.py:cell=lstm,smoke').")
        if not value:
            choices[name] = True
        elif isinstance(defaults[name], bool):
            choices[name] = value.lower() in ("1", "true", "yes")
        elif isinstance(defaults[name], (int, float)):
            choices[name] = type(defaults[name])(ast.literal_eval(value))
        else:
            choices[name] = value
    return ml_collections.ConfigDict(choices)


def cell_options_config(**values: Any) -> ml_collections.ConfigDict:
    """The `model.cell_options` block: every option typed, unset (None) unless given."""
    block = ml_collections.ConfigDict()
    for name, kind in CELL_OPTION_TYPES.items():
        block[name] = values.pop(name) if name in values else ml_collections.config_dict.placeholder(kind)
    if values:
        raise ValueError(f"unknown cell options {sorted(values)}; known: {sorted(CELL_OPTION_TYPES)}.")
    return block


def attention_config(normaliser: str | None = None, **values: Any) -> ml_collections.ConfigDict:
    """The `model.attention` block; attention is on when `normaliser` is set."""
    block = ml_collections.ConfigDict({
        "normaliser": ml_collections.config_dict.placeholder(str),
        "score": "additive", "layer": -1,
        "window": ml_collections.config_dict.placeholder(int),
        "top_k": ml_collections.config_dict.placeholder(int),
        "d_attn": ml_collections.config_dict.placeholder(int),
        "query_chunk": ml_collections.config_dict.placeholder(int),
    })
    block.normaliser = normaliser
    block.update(values)
    return block


def residual_config(**values: Any) -> ml_collections.ConfigDict:
    """The `model.residual` block, read when model.block="residual" (`ltf.hybrid.ResidualStack`,
    Griffin's blocks): the pattern of recurrent ("r") and local-attention ("a") blocks, the
    attention window, the causal convolution's width and the MLP's expansion."""
    block = ml_collections.ConfigDict(dict(pattern="rra", window=64, conv_width=4, mlp_expansion=3))
    block.update(values)
    return block


def cell_arms(*cells: str, attention: bool = False, attention_window: int | None = None) -> dict[str, dict]:
    """Ablation arms (name -> overrides) for `ltf.sweep.arms_sweep`: one per cell, and with
    `attention`, "time_aware_attention" (softmax over the last `attention_window` steps, or all)."""
    arms = {cell: {"model.cell": cell} for cell in cells}
    if attention:
        arms["time_aware_attention"] = {"model.cell": "time_aware", "model.attention.normaliser": "softmax"}
        if attention_window is not None:
            arms["time_aware_attention"]["model.attention.window"] = attention_window
    return arms


# The gated linear recurrences (issue 18) as sweep arms beside a config's LSTM arms (`ltf.sweep.
# arms_sweep(..., matched_inputs=...)`), each at the width `matched_arms` gives. "griffin" is
# Griffin's residual blocks of `rglru` with local attention (model.residual.pattern "rra"),
# "mlstm_head_norm" normalises each head's h̃ as xLSTM's block does;
# "residual_lstm" and "residual_mlstm" the same blocks around `lstm` and `mlstm`: what the block
# adds, apart from the cell (Griffin's block, not xLSTM's own mLSTM block).
MODERN_ARMS = {
    "rglru": {"model.cell": "rglru"},
    "linear_decay": {"model.cell": "linear_decay"},
    "mlstm": {"model.cell": "mlstm", "model.cell_options.heads": 4},
    "mlstm_head_norm": {"model.cell": "mlstm", "model.cell_options.heads": 4, "model.cell_options.head_norm": True},
    "griffin": {"model.cell": "rglru", "model.block": "residual", "model.n_layers": 3},
    "residual_lstm": {"model.cell": "lstm", "model.block": "residual", "model.n_layers": 3},
    "residual_mlstm": {"model.cell": "mlstm", "model.cell_options.heads": 4, "model.block": "residual",
                       "model.n_layers": 3},
}


def matched_arms(config, d_in: int, arms: dict[str, dict] | None = None, reference: str = "lstm") -> dict[str, dict]:
    """`arms` (default MODERN_ARMS), each with model.d_hidden set so that its recurrent stack has
    as many parameters as the `reference` cell's stack at `config`'s size, on inputs of width
    `d_in` (embedding and head excluded: they are the same for every arm). mlstm's width is a
    multiple of its heads."""
    reference_model = ml_collections.ConfigDict(config.model.to_dict())
    reference_model.cell = reference
    target = stack_params(reference_model, d_in)
    matched = {}
    for name, overrides in (MODERN_ARMS if arms is None else arms).items():
        trial = ml_collections.ConfigDict(config.to_dict())
        trial.update_from_flattened_dict(overrides)
        heads = overrides.get("model.cell_options.heads", 1)
        matched[name] = {**overrides,
                         "model.d_hidden": matched_width(trial.model, d_in, target, multiple=heads)}
    return matched


def stack_inputs(model_cfg, d_values: int) -> int:
    """The width of a SequenceModel's stack input: the values, and the observation mask beside them
    with model.use_obs_mask (`ltf.models.SequenceModel.build`)."""
    return d_values * (2 if model_cfg.get("use_obs_mask", False) else 1)


def parallel_config() -> ml_collections.ConfigDict:
    """The `parallel` block (ltf/parallel.py): data parallel over the local devices, and across
    hosts with `distributed` (jax.distributed.initialize). The coordinator's host:port, the
    number of processes and this one's id: "", 0 and -1 take them from the environment
    (`ltf.parallel.host_settings`). `timeout_s`: how long a host waits for the others to join;
    `heartbeat_s`: how soon the others stop after a host dies."""
    return ml_collections.ConfigDict(dict(data_parallel=False, distributed=False, coordinator_address="",
                                          num_processes=0, process_id=-1, timeout_s=300, heartbeat_s=100))


def opt_config(**values: Any) -> ml_collections.ConfigDict:
    """The `opt` block: Adam 1e-3, cosine decay to a tenth after 100 warm-up steps, clipping at
    norm 1, unless `values` say otherwise (every field is always present, so overrides work)."""
    block = ml_collections.ConfigDict(dict(
        name="adam", lr=1e-3, schedule="cosine", warmup_steps=100, end_lr_factor=0.1,
        weight_decay=0.0, b1=0.9, b2=0.999, clip_norm=1.0,
        decay_start_step=0, decay_every_steps=1, decay_factor=0.5,  # schedule="step" only
    ))
    block.update(values)
    return block


def train_config(*, steps: int, eval_every: int, log_every: int = 100, **values: Any) -> ml_collections.ConfigDict:
    """The `train` block: checkpoints at every evaluation, the last two kept (and the best),
    whole-split evaluation, the best checkpoint by validation loss, test splits after the last step."""
    block = ml_collections.ConfigDict(dict(
        steps=steps, log_every=log_every, eval_every=eval_every, checkpoint_every=eval_every, keep_checkpoints=2,
        eval_max_batches=ml_collections.config_dict.placeholder(int),  # None: the whole split
        progress=True, **SELECTION_DEFAULTS,
    ))
    block.update(values)
    return block


def sequence_model_config(choices, *, head: str, d_hidden: int, n_layers: int = 1,
                          use_obs_mask: bool = False, input_decay: bool = False) -> ml_collections.ConfigDict:
    """The `model` block of a SequenceModel config (configs/reber.py, long_lag.py, ...), from the
    config's choices cell=, attention=, window=, chrono (T_max for chrono: `choices.chrono_t_max`).
    `input_decay`: GRU-D's input decay of the values (`ltf.models.SequenceModel`)."""
    block = ml_collections.ConfigDict(dict(
        cell=choices.cell, d_hidden=d_hidden, n_layers=n_layers, head=head, use_obs_mask=use_obs_mask,
        input_decay=input_decay,
        dropout=0.0, locked_dropout=False, unroll=1, remat=False, backward="custom",
        cell_options=cell_options_config(),
        attention=attention_config(choices.attention or None, window=choices.window or None),
        block="stack", residual=residual_config(),
    ))
    # T_max is set whether or not chrono is on, so that a sweep arm (or --config flag) can turn
    # chrono on with forget_init alone; the cells read it only under forget_init="chrono".
    block.cell_options.chrono_t_max = float(choices.chrono_t_max)
    if choices.chrono:
        block.cell_options.forget_init = "chrono"
    return block


def _cell_options(model_cfg) -> dict:
    return {k: v for k, v in model_cfg.cell_options.items() if v is not None}


def _attention_spec(model_cfg) -> AttentionSpec | None:
    att = model_cfg.attention
    if att.normaliser is None:
        return None
    return AttentionSpec(layer=att.layer, score=att.score, normaliser=att.normaliser, window=att.window,
                         top_k=att.top_k, d_attn=att.d_attn, query_chunk=att.query_chunk)


def _stack_options(model_cfg) -> dict:
    return dict(cell=model_cfg.cell, d_hidden=model_cfg.d_hidden, n_layers=model_cfg.n_layers,
                cell_options=_cell_options(model_cfg), attention=_attention_spec(model_cfg),
                dropout=model_cfg.dropout, locked_dropout=model_cfg.locked_dropout,
                unroll=model_cfg.unroll, remat=model_cfg.remat, backward=model_cfg.get("backward", "custom"),
                **_block_options(model_cfg))


def _block_options(model_cfg) -> dict:
    """model.block, and for "residual" the options of model.residual (older configs: "stack")."""
    block = model_cfg.get("block", "stack")
    return {"block": block, **(dict(model_cfg.residual) if block == "residual" else {})}


def build_language_model(model_cfg, vocab_size: int) -> LanguageModel:
    return LanguageModel.build(vocab_size=vocab_size, d_embed=model_cfg.d_embed,
                               tie_weights=model_cfg.tie_weights, init_uniform=model_cfg.get("init_uniform", 0.0),
                               two_gate_biases=model_cfg.get("two_gate_biases", False), **_stack_options(model_cfg))


def stack_params(model_cfg, d_in: int) -> int:
    """The parameters of the recurrent stack a model config builds on inputs of width `d_in`
    (embedding and head excluded: they depend on the data, not on the arm)."""
    import jax
    import numpy as np

    from ltf.models import make_stack

    stack = make_stack(d_in, **_stack_options(model_cfg))
    shapes = jax.eval_shape(stack.init, jax.random.PRNGKey(0))  # shapes only: nothing is computed
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def matched_width(model_cfg, d_in: int, target: int, *, multiple: int = 1) -> int:
    """The d_hidden, a multiple of `multiple`, at which `model_cfg`'s stack has the parameter count
    closest to `target`: arms compared at equal parameters. A stack's count is a quadratic in its
    width (H x H and D x H matrices, H-vectors): fitted from three widths, solved, and the two
    nearest widths counted again. The fit skips the width d_in, at which a residual stack has no
    input projection (its count is off the quadratic there)."""
    import numpy as np

    def count(width: int) -> int:
        trial = ml_collections.ConfigDict(model_cfg.to_dict())
        trial.d_hidden = width
        return stack_params(trial, d_in)

    widths = [multiple * (k + (multiple * k == d_in)) for k in (8, 16, 32)]
    quadratic = np.polyfit(widths, [count(w) for w in widths], 2)
    roots = np.roots(quadratic - np.array([0, 0, target]))
    # the smallest positive root: a count linear in the width (one diagonal layer) fits with a
    # quadratic term of rounding size, whose second root is far out
    best = min(float(r.real) for r in roots if abs(r.imag) < 1e-9 and r.real > 0)
    low = max(multiple, int(best // multiple) * multiple)
    return min((low, low + multiple), key=lambda w: abs(count(w) - target))


def build_sequence_model(model_cfg, d_values: int, d_out: int, d_static: int = 0) -> SequenceModel:
    return SequenceModel.build(d_values=d_values, d_out=d_out, head=model_cfg.head,
                               use_obs_mask=model_cfg.use_obs_mask, d_static=d_static,
                               input_decay=model_cfg.get("input_decay", False), **_stack_options(model_cfg))


# Model selection: the checkpoint kept as "best" is the one with the best `select_by` on the first
# evaluation split (validation), `select_mode` "min" or "max"; `test_at` "best" evaluates the other
# splits (test, extra sets) with that checkpoint's parameters at the end, "last" with the last step's.
SELECTION_DEFAULTS = {"select_by": "loss", "select_mode": "min", "test_at": "last"}


def selection(config) -> tuple[str, str, str]:
    """(select_by, select_mode, test_at) of a config; configs (and runs) without them: the defaults."""
    return tuple(config.train.get(k, v) for k, v in SELECTION_DEFAULTS.items())


def best_checkpoint(config) -> dict:
    """`ltf.checkpoint.Checkpointer`'s ranking of a run: {"best_metric": "val_<select_by>",
    "best_mode": select_mode}, the name under which training stores the validation value."""
    select_by, select_mode, _ = selection(config)
    return {"best_metric": f"val_{select_by}", "best_mode": select_mode}


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ValueError(f"config.{field}: {message}")


def validate(config) -> None:
    """Checks a resolved config before anything is built; errors name the field and the fix."""
    m, o, t, d = config.model, config.opt, config.train, config.data
    _require(m.cell in CELLS, "model.cell", f"{m.cell!r} is not a cell; allowed values are {tuple(CELLS)}.")
    for field in ("d_hidden", "n_layers"):
        _require(m[field] >= 1, f"model.{field}", f"{m[field]} must be a positive integer.")
    for field in ("batch_size", "seq_len"):
        _require(d[field] >= 1, f"data.{field}", f"{d[field]} must be a positive integer.")
    _require(t.steps >= 1, "train.steps", f"{t.steps} must be a positive integer.")
    for field in ("log_every", "eval_every", "checkpoint_every"):
        _require(t[field] >= 1, f"train.{field}", f"{t[field]} must be a positive integer.")
    _, select_mode, test_at = selection(config)
    _require(select_mode in ("min", "max"), "train.select_mode", f"{select_mode!r}; allowed values are 'min', 'max'.")
    _require(test_at in ("last", "best"), "train.test_at", f"{test_at!r}; allowed values are 'last', 'best'.")
    _require(0.0 <= m.dropout < 1.0, "model.dropout", f"{m.dropout} must be in [0, 1).")
    _require(m.get("init_uniform", 0.0) >= 0, "model.init_uniform",
             f"{m.get('init_uniform')} must be >= 0 (0: the default initialisers; 0.1: Zaremba et al.).")
    _require(o.name in OPTIMIZERS, "opt.name", f"{o.name!r}; allowed values are {OPTIMIZERS}.")
    if m.get("two_gate_biases", False):  # Zaremba et al.'s Lua LSTM; the pair is exact for SGD only
        _require(o.name == "sgd" and m.get("init_uniform", 0.0) > 0 and m.get("block", "stack") == "stack",
                 "model.two_gate_biases", f"True needs opt.name='sgd', model.init_uniform > 0 and "
                 f"model.block='stack' (got {o.name!r}, {m.get('init_uniform', 0.0)}, {m.get('block', 'stack')!r}).")
    _require(o.schedule in SCHEDULES, "opt.schedule", f"{o.schedule!r}; allowed values are {SCHEDULES}.")
    _require(o.lr > 0, "opt.lr", f"{o.lr} must be positive.")
    _require(not o.weight_decay or o.name == "adamw", "opt.weight_decay",  # adam and sgd would ignore it
             f"{o.weight_decay} applies to opt.name='adamw' only (got {o.name!r}); set "
             "--config.opt.name=adamw, or weight_decay=0.")
    _require(m.backward in BACKWARDS, "model.backward", f"{m.backward!r}; allowed values are {BACKWARDS}.")
    try:
        cell = make_cell(m.cell, **_cell_options(m))
        if hasattr(cell, "head_size"):  # a cell that splits H into heads (mlstm) checks d_hidden too
            cell.head_size(m.d_hidden)
    except ValueError as e:
        raise ValueError(f"config.model.cell_options (cell={m.cell!r}): {e}") from None
    spec = _attention_spec(m)
    if spec is not None:
        _require(spec.normaliser in attention.NORMALISERS, "model.attention.normaliser",
                 f"{spec.normaliser!r}; allowed values are {tuple(attention.NORMALISERS)} (or None: no attention).")
        _require(spec.normaliser != "topk" or (spec.top_k or 0) >= 1, "model.attention.top_k",
                 "the topk normaliser needs a positive top_k.")
        _require(spec.window is None or spec.window >= 1, "model.attention.window",
                 f"{spec.window} must be a positive integer or None.")
        _require(-m.n_layers <= spec.layer < m.n_layers, "model.attention.layer",
                 f"{spec.layer}: the model has {m.n_layers} layers (0..{m.n_layers - 1}, or -1 for the last).")


def load_module(path: str):
    """The config file at `path` as a module (for its get_config and get_sweep)."""
    import importlib.util
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist (expected e.g. configs/tlstm_lm.py).")
    module_spec = importlib.util.spec_from_file_location(f"ltf_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_config(spec: str) -> ml_collections.ConfigDict:
    """'configs/tlstm_lm.py:cell=lstm,smoke' -> the locked ConfigDict, as `--config` gives it."""
    path, _, arg = spec.partition(":")
    config = load_module(path).get_config(arg or None)
    config.lock()
    return config
