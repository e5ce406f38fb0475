"""Ablation sweeps as named runs: a config's `get_sweep(arg)` expanded into runs, each with its
name, its workdir and its config. `ltf.sweep_runner` trains them, `ltf.report` reads them back.

    sweep = load_sweep("configs/tlstm_lm.py:arms=lstm+tlstm,seeds=2,smoke")
    [run.name for run in sweep.runs]        # ['smoke,cell=lstm,seed=0', 'smoke,cell=tlstm,seed=0', ...]
    run.load_config()                       # get_config(run.config_arg), then the run's overrides

What a sweep is. `get_sweep(arg)` returns a list of dicts, one per run, each a set of dotted
overrides of the config that `get_config` builds ({"model.cell": "lstm", "seed": 0}); the key
"config_arg" carries the choices passed to `get_config` (e.g. "smoke"). Arms are written as
overrides, which name the field they change; "config_arg" is for what only a choice can do
(`smoke` shrinks several sections at once). Runs are grouped into arms by all they set except
`seed` and the keys an entry lists under "replicates" (what else varies within an arm, like
the seed: cross-validation's "task.fold"). An entry's "label" (`arms_sweep` gives the config's
arm name: "phased_authors_init") names its arm in reports, in place of the run name without the
seed, which a long arm ends in a hash; it is in no name or config. The list's order is the run
order and the order that `--shard` deals from.

Names. A run's name, and its workdir `W/<name>`, come from its entry alone: the config_arg
choices, then `key=value` per override in the entry's order, the key shortened to its last dotted
part (`model.attention.window` -> `window`) unless two keys of the entry share it; characters
other than letters, digits and `._,=+-` become `_`; names over MAX_NAME characters are cut and
end in a hash of the whole (of all but the seed, which stays at the end: `run_name`). So
`{"config_arg": "smoke", "model.cell": "lstm", "seed": 1}` runs in `W/smoke,cell=lstm,seed=1`,
a smoke run never shares a workdir with a full one, and adding runs to a sweep renames none.
Two entries that give one name are an error.

A sweep workdir W (written by `ltf.sweep_runner`, read by `ltf.report`):

    sweep.json          the config and the runs (name, arm, seed, config_arg, overrides)
    <run>/log.txt       the run's stdout and stderr, every attempt appended under a header line
    <run>/sweep_run.json  its entry, command and attempts (start, wall_s, returncode)
    <run>/DONE          written when it finished (see ltf.sweep_runner)
    <run>/LOCK          the lock of the worker that trains it (ltf.run_lock; its content: who took it last)
    <run>/...           what train_and_evaluate writes: config.json, metrics.jsonl, checkpoints/
    results.md, results.csv, *.png   from ltf.report.write_report
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from ltf import config_lib
from ltf.writers import json_safe

CONFIG_ARG = "config_arg"
SEED = "seed"
REPLICATES = "replicates"  # entry key: the override keys that vary within an arm besides the seed
LABEL = "label"  # entry key: the arm's name in reports (the config's name for it)
MAX_NAME = 96
_SEED_ROOM = len(",seed=") + 10  # what a cut name keeps free for its seed
SWEEP_FILE, RUN_FILE = "sweep.json", "sweep_run.json"  # the records ltf.report reads
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")


# -- what get_sweep returns, as named runs ---------------------------------------------------


def sweep_arg(arg: str | None, **defaults: Any) -> tuple[ml_collections.ConfigDict, str]:
    """For `get_sweep(arg)`: the sweep's own choices (those in `defaults`) and, as a string for
    `get_config`, all the other choices ('arms=lstm,seeds=2,smoke' -> ({arms, seeds}, 'smoke'))."""
    own, rest = [], []
    for item in filter(None, (arg or "").split(",")):
        (own if item.partition("=")[0] in defaults else rest).append(item)
    return config_lib.parse_arg(",".join(own), **defaults), ",".join(rest)


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(_format_value, value))
    return str(value).lower() if isinstance(value, bool) or value is None else str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's shortest tail that no other key of `keys` ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(o != key and ".".join(o.split(".")[-n:]) == tail for o in keys):
                break
        short[key] = tail
    return short


def _name_parts(entry: Mapping[str, Any]) -> list[str]:
    parts = [c for c in str(entry.get(CONFIG_ARG) or "").split(",") if c]
    keys = [k for k in entry if k != CONFIG_ARG]
    short = _short_keys(keys)
    return parts + [f"{short[k]}={_format_value(entry[k])}" for k in keys]


def _safe(whole: str) -> str:
    name = _UNSAFE.sub("_", whole)
    return "_" + name if name[0] in ".-" else name


def _cut(whole: str, keep: int) -> str:
    return _safe(whole)[:keep] + "-" + hashlib.sha1(whole.encode()).hexdigest()[:8]


def _whole_name(whole: str) -> str:
    """`whole` made safe, cut and hashed whole when over MAX_NAME."""
    name = _safe(whole)
    return name if len(name) <= MAX_NAME else _cut(whole, MAX_NAME - 9)


def run_name(entry: Mapping[str, Any]) -> str:
    """The workdir name of a sweep entry (see the module docstring): deterministic and safe.

    A name over MAX_NAME is cut and hashed; when the entry's last key is the seed, the hash covers
    the rest and `seed=N` stays at the end, at a cut that leaves room for 10 digits, so that every
    seed of an arm shares one name but for its seed (`seed_template`) and can train in one process."""
    parts = _name_parts(entry)
    whole = ",".join(parts) or "default"
    keys = [k for k in entry if k != CONFIG_ARG]
    if len(_safe(whole)) > MAX_NAME and keys and keys[-1] == SEED:
        return _cut(",".join(parts[:-1]), MAX_NAME - 9 - _SEED_ROOM) + "," + _safe(parts[-1])
    return _whole_name(whole)


def legacy_run_name(entry: Mapping[str, Any]) -> str:
    """The name ltf gave an entry until December 2026, when a long name's hash covered its seed too
    (so that its seeds could not share a process); `ltf.sweep_runner` renames such workdirs."""
    return _whole_name(",".join(_name_parts(entry)) or "default")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
    """Sets dotted fields of `config` in place; a key the config lacks fails naming it."""
    for key, value in overrides.items():
        node, path = config, key.split(".")
        for depth, part in enumerate(path):
            where = ".".join(path[:depth]) or "the config"
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                raise ValueError(f"override {key!r}: {where} has no field {part!r}; its fields are {fields}.")
            if depth == len(path) - 1:
                try:
                    node[part] = value
                except (TypeError, ValueError) as e:
                    raise ValueError(f"override {key}={value!r}: {e}") from None
            node = node[part]


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    arm: str  # the name without the seed: the table row it goes to
    config: str  # the config file
    config_arg: str  # choices for get_config
    overrides: dict  # dotted key -> value
    steps: int  # train.steps, after the overrides
    shared: dict = dataclasses.field(default_factory=dict)  # overrides of every run (sweep.py --set), not in names
    label: str = ""  # the arm's name in reports ("" : `arm`)

    @property
    def seed(self) -> Any:
        return self.overrides.get(SEED)

    def load_config(self) -> ml_collections.ConfigDict:
        """The locked config this run trains with: get_config(config_arg), then the overrides."""
        config = config_lib.load_config(f"{self.config}:{self.config_arg}")
        apply_overrides(config, {**self.shared, **self.overrides})
        return config

    def record(self) -> dict:
        return json_safe({"name": self.name, "arm": self.arm, "seed": self.seed, "config": self.config,
                          CONFIG_ARG: self.config_arg, "overrides": self.overrides, "shared": self.shared,
                          "steps": self.steps, LABEL: self.label or self.arm}, strict=False)


@dataclasses.dataclass(frozen=True)
class Sweep:
    spec: str  # 'configs/x.py:arg'
    runs: tuple[Run, ...]


def expand(config: str, entries: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None) -> list[Run]:
    """Named runs from get_sweep's entries; every run's config is built, so that a bad override
    fails here, before anything runs, naming the run and the key. `shared` overrides go to every
    run and stay out of the names: a data path, a step budget; one that an entry sets to another
    value is an error (the entry's would win, unseen)."""
    runs, seen, labels = [], {}, {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TypeError(f"sweep entry {i} is {entry!r}, not a dict of dotted overrides")
        replicates = tuple(entry.get(REPLICATES, ()))
        label = str(entry.get(LABEL) or "")
        entry = {k: v for k, v in entry.items() if k not in (REPLICATES, LABEL)}
        overrides = {k: v for k, v in entry.items() if k != CONFIG_ARG}
        name = run_name(entry)
        if name in seen:
            raise ValueError(f"sweep entries {seen[name]} and {i} both give the run name {name!r}: "
                             "make them differ (or spell the keys in full).")
        seen[name] = i
        arm = run_name({k: v for k, v in entry.items() if k != SEED and k not in replicates})
        for key in sorted(set(shared or {}) & set(overrides)):
            if shared[key] != overrides[key]:  # the arm's value would win silently, and the name would say so
                raise ValueError(f"--set {key}={shared[key]!r} conflicts with run {name!r}, whose arm sets "
                                 f"{key}={overrides[key]!r} (an arm's own values win over --set). Drop the "
                                 "--set, leave that arm out (arms=...), or add an arm with this value to the "
                                 "config's ARMS.")
        if label and labels.setdefault(label, arm) != arm:
            raise ValueError(f"sweep label {label!r} names two arms, {labels[label]!r} and {arm!r}: give each its own.")
        run = Run(name, arm, config, str(entry.get(CONFIG_ARG) or ""), overrides, steps=0, shared=dict(shared or {}),
                  label=label)
        try:
            run_config = run.load_config()
            config_lib.validate(run_config)  # an arm that cannot train fails now, not after the others ran
            steps = run_config.train.steps
        except ValueError as e:
            raise ValueError(f"sweep run {name!r}: {e}") from None
        runs.append(dataclasses.replace(run, steps=int(steps)))
    return runs


def load_sweep(spec: str, shared: Mapping[str, Any] | None = None) -> Sweep:
    """'configs/tlstm_lm.py:arms=lstm,seeds=2,smoke' -> the Sweep of that file's get_sweep(arg);
    `shared`: dotted overrides for every run (see `expand`)."""
    path, _, arg = spec.partition(":")
    module = config_lib.load_module(path)
    if not hasattr(module, "get_sweep"):
        raise ValueError(f"{path} has no get_sweep(arg): write one beside its get_config "
                         "(see configs/tlstm_lm.py).")
    return Sweep(spec, tuple(expand(path, module.get_sweep(arg or None), shared)))


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """['data.data_dir=../ptb', 'train.steps=100'] -> {key: value}; values as Python literals
    where they parse as one (100, 0.5, True), as strings otherwise."""
    import ast

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected section.field=value (e.g. --set data.data_dir=../ptb)")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


MATCH = ("params", "width")  # how arms_sweep sizes the modern arms (its docstring)


def arms_sweep(arg: str | None, arms: Mapping[str, Mapping[str, Any]], get_config: Callable, *,
               seeds: int, default: Sequence[str] | None = None,
               matched_inputs: Callable[[Any], int] | None = None) -> list[dict]:
    """The ablation a config offers as `get_sweep(arg)`: its `arms` (name -> overrides) x seeds,
    seed-major (all arms of seed 0 come first).

    Choices: arms=a+b (names in `arms`; default `default`, else all), seeds=N (default `seeds`);
    every other choice goes to get_config for every run (smoke, chrono, ...), which fails now on
    one it lacks. The arms set the cell and attention, so those choices are refused.

    `matched_inputs` (config -> the width of its recurrent stack's input) offers the gated linear
    recurrences of `config_lib.MODERN_ARMS` as further arms, outside the default: each at the
    width where its stack's parameters match `lstm`'s at the size of the config the other choices
    give (`config_lib.matched_arms`; match=params, the default), or at the config's own width
    (match=width: on a task of one or two inputs equal parameters make the diagonal cells
    thousands of units wide, since their only matrices read the input)."""
    choices, config_arg = sweep_arg(arg, arms="+".join(default or arms), seeds=seeds, match="params")
    if choices.match not in MATCH:
        raise ValueError(f"sweep choice match={choices.match!r}: allowed values are {MATCH} (the modern arms at "
                         "lstm's parameter count, or at the config's model.d_hidden).")
    picked = choices.arms.split("+")
    modern = [name for name in config_lib.MODERN_ARMS if matched_inputs is not None and name not in arms]
    unknown = [a for a in picked if a not in arms and a not in modern]
    if unknown:
        raise ValueError(f"sweep arms {unknown}: not arms of this sweep; its arms are {list(arms) + modern}.")
    fixed = [c for c in config_arg.split(",") if c.partition("=")[0] in ("cell", "attention", "window")]
    if fixed:
        raise ValueError(f"sweep choices {fixed}: the arms set the cell and attention; pick arms with arms=a+b.")
    config = get_config(config_arg)
    if any(a in modern for a in picked):
        if choices.match == "params":  # their widths depend on the config's size
            modern_arms = config_lib.matched_arms(config, matched_inputs(config))
        else:
            modern_arms = _at_config_width(config, [a for a in picked if a in modern])
        arms = {**modern_arms, **arms}
    extra = {CONFIG_ARG: config_arg} if config_arg else {}
    return [{**extra, **arms[arm], SEED: seed, LABEL: arm} for seed in range(choices.seeds) for arm in picked]


def _at_config_width(config, names: Sequence[str]) -> dict[str, dict]:
    """The modern arms as they are, at config.model.d_hidden, which must divide into their heads."""
    width = config.model.d_hidden
    for name in names:
        heads = config_lib.MODERN_ARMS[name].get("model.cell_options.heads", 1)
        if width % heads:
            raise ValueError(f"sweep choice match=width: arm {name!r} has {heads} heads, which do not divide the "
                             f"config's model.d_hidden={width}; use match=params, or leave {name!r} out.")
    return dict(config_lib.MODERN_ARMS)


# -- a seed group's workdirs (what `scripts/train.py --seeds` fills in) ----------------------


def seed_template(run: Run) -> str | None:
    """The run's name with its seed as `{seed}` (what `train.py --seeds` fills in), or None when
    the name does not end in its seed as itself (a seed not an int, or not the entry's last key).

    Read from the run's own name: a longer stand-in seed could push a name near MAX_NAME over it
    and into a hash, and so keep the seeds of such an arm from sharing a process."""
    if not isinstance(run.seed, int) or isinstance(run.seed, bool):
        return None
    seed = str(run.seed)
    # the name the sweep gives with the seed as the last key, so that it ends in "seed=<seed>"
    entry = {CONFIG_ARG: run.config_arg, **{k: v for k, v in run.overrides.items() if k != SEED}, SEED: run.seed}
    if run_name(entry) != run.name or not run.name.endswith(f"{SEED}={seed}"):
        return None
    return run.name[:-len(seed)] + "{seed}"
