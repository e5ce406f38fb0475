"""Ablation sweeps: a config's `get_sweep(arg)` expanded into named runs, each trained in its own
process and workdir, with their status read back from the workdirs.

    sweep = load_sweep("configs/tlstm_lm.py:arms=lstm+tlstm,seeds=2,smoke")
    [run.name for run in sweep.runs]        # ['smoke,cell=lstm,seed=0', 'smoke,cell=tlstm,seed=0', ...]
    result = run_sweep(sweep, "runs/s", jobs=2)          # skips finished runs, resumes the others
    ltf.report.write_report("runs/s")                     # results.md, results.csv, figures

What a sweep is. `get_sweep(arg)` returns a list of dicts, one per run, each a set of dotted
overrides of the config that `get_config` builds ({"model.cell": "lstm", "seed": 0}); the key
"config_arg" carries the choices passed to `get_config` (e.g. "smoke"). Arms are written as
overrides, which name the field they change; "config_arg" is for what only a choice can do
(`smoke` shrinks several sections at once). Runs are grouped into arms by all they set except
`seed`. The list's order is the run order and the order that `--shard` deals from.

Names. A run's name, and its workdir `W/<name>`, come from its entry alone: the config_arg
choices, then `key=value` per override in the entry's order, the key shortened to its last dotted
part (`model.attention.window` -> `window`) unless two keys of the entry share it; characters
other than letters, digits and `._,=+-` become `_`; names over MAX_NAME characters are cut and
end in a hash of the whole. So `{"config_arg": "smoke", "model.cell": "lstm", "seed": 1}` runs
in `W/smoke,cell=lstm,seed=1`, a smoke run never shares a workdir with a full one, and adding
runs to a sweep renames none. Two entries that give one name are an error.

Finished. The runner writes `W/<run>/DONE` (JSON: steps, wall time) when the run's process
exits 0 and its metrics hold the validation record of the final step, `train.steps`. A run
counts as finished when DONE is there with the steps its config asks for now; any other run is
started again, and `train_and_evaluate` resumes it from its latest checkpoint (or returns at
once when it had in fact finished).

A sweep workdir W:

    sweep.json          the config and the runs (name, arm, seed, config_arg, overrides)
    <run>/log.txt       the run's stdout and stderr, every attempt appended under a header line
    <run>/sweep_run.json  its entry, command and attempts (start, wall_s, returncode)
    <run>/DONE          written when it finished (above)
    <run>/...           what train_and_evaluate writes: config.json, metrics.jsonl, checkpoints/
    results.md, results.csv, *.png   from ltf.report.write_report
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from ltf import config_lib
from ltf.writers import json_safe, read_metrics

CONFIG_ARG = "config_arg"
SEED = "seed"
MAX_NAME = 96
SWEEP_FILE, RUN_FILE, LOG_FILE, DONE_FILE = "sweep.json", "sweep_run.json", "log.txt", "DONE"
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"
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


def run_name(entry: Mapping[str, Any]) -> str:
    """The workdir name of a sweep entry (see the module docstring): deterministic and safe."""
    parts = [c for c in str(entry.get(CONFIG_ARG) or "").split(",") if c]
    keys = [k for k in entry if k != CONFIG_ARG]
    short = _short_keys(keys)
    parts += [f"{short[k]}={_format_value(entry[k])}" for k in keys]
    whole = ",".join(parts) or "default"
    name = _UNSAFE.sub("_", whole)
    if name[0] in ".-":
        name = "_" + name
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 9] + "-" + hashlib.sha1(whole.encode()).hexdigest()[:8]
    return name


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
                          "steps": self.steps}, strict=False)


@dataclasses.dataclass(frozen=True)
class Sweep:
    spec: str  # 'configs/x.py:arg'
    runs: tuple[Run, ...]


def expand(config: str, entries: Sequence[Mapping[str, Any]], shared: Mapping[str, Any] | None = None) -> list[Run]:
    """Named runs from get_sweep's entries; every run's config is built, so that a bad override
    fails here, before anything runs, naming the run and the key. `shared` overrides go to every
    run (under the entries' own) and stay out of the names: a data path, a step budget."""
    runs, seen = [], {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TypeError(f"sweep entry {i} is {entry!r}, not a dict of dotted overrides")
        overrides = {k: v for k, v in entry.items() if k != CONFIG_ARG}
        name = run_name(entry)
        if name in seen:
            raise ValueError(f"sweep entries {seen[name]} and {i} both give the run name {name!r}: "
                             "make them differ (or spell the keys in full).")
        seen[name] = i
        arm = run_name({k: v for k, v in entry.items() if k != SEED})
        run = Run(name, arm, config, str(entry.get(CONFIG_ARG) or ""), overrides, steps=0, shared=dict(shared or {}))
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


def arms_sweep(arg: str | None, arms: Mapping[str, Mapping[str, Any]], get_config: Callable, *,
               seeds: int) -> list[dict]:
    """The ablation a config offers as `get_sweep(arg)`: its `arms` (name -> overrides) x seeds,
    seed-major (all arms of seed 0 come first).

    Choices: arms=a+b (names in `arms`; default all), seeds=N (default `seeds`); every other choice
    goes to get_config for every run (smoke, chrono, ...), which fails now on one it lacks. The
    arms set the cell and attention, so those choices are refused."""
    choices, config_arg = sweep_arg(arg, arms="+".join(arms), seeds=seeds)
    picked = choices.arms.split("+")
    unknown = [a for a in picked if a not in arms]
    if unknown:
        raise ValueError(f"sweep arms {unknown}: not arms of this sweep; its arms are {list(arms)}.")
    fixed = [c for c in config_arg.split(",") if c.partition("=")[0] in ("cell", "attention", "window")]
    if fixed:
        raise ValueError(f"sweep choices {fixed}: the arms set the cell and attention; pick arms with arms=a+b.")
    get_config(config_arg)
    extra = {CONFIG_ARG: config_arg} if config_arg else {}
    return [{**extra, **arms[arm], SEED: seed} for seed in range(choices.seeds) for arm in picked]


# -- sharding and status ---------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), 0 <= i < n."""
    i, _, n = text.partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: expected i/n with 0 <= i < n (e.g. 0/2 and 1/2 on two machines).")
    return index, count


def shard(runs: Sequence[Run], index: int, count: int) -> list[Run]:
    """Runs index, index + count, ...: the shards of one sweep partition it."""
    return list(runs[index::count])


def is_finished(run: Run, run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / DONE_FILE).read_text())["steps"] == run.steps
    except (OSError, ValueError, KeyError, TypeError):
        return False


def status(run: Run, run_dir: Path) -> str:
    """'done', 'at step k' (started, not finished) or 'to do'."""
    if is_finished(run, run_dir):
        return "done"
    steps = [r["step"] for r in read_metrics(run_dir)]
    return f"at step {max(steps)}" if steps else "to do"


def train_command(run: Run, run_dir: Path, train_script: Path = TRAIN_SCRIPT) -> list[str]:
    """scripts/train.py with the run's config and its overrides as --config.x=v flags."""
    return _command(run, f"--workdir={run_dir}", train_script)


def group_command(runs: Sequence[Run], workdir: Path, train_script: Path = TRAIN_SCRIPT) -> list[str]:
    """scripts/train.py training the seeds of one arm at once (`--seeds`), each in its own run dir."""
    template = seed_template(runs[0])
    assert template is not None and all(r.arm == runs[0].arm for r in runs), "not one arm's seeds"
    seedless = dataclasses.replace(runs[0], overrides={k: v for k, v in runs[0].overrides.items() if k != SEED})
    return _command(seedless, f"--workdir={workdir / template}", train_script,
                    f"--seeds={','.join(str(r.seed) for r in runs)}")


def _command(run: Run, workdir_flag: str, train_script: Path, *extra: str) -> list[str]:
    spec = str(Path(run.config).resolve()) + (f":{run.config_arg}" if run.config_arg else "")
    flag = lambda v: repr(v) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return [sys.executable, str(train_script), f"--config={spec}", workdir_flag, *extra,
            *(f"--config.{k}={flag(v)}" for k, v in {**run.shared, **run.overrides}.items())]


_SENTINEL_SEED = 918273645


def seed_template(run: Run) -> str | None:
    """The run's name with its seed as `{seed}` (what `train.py --seeds` fills in), or None when
    the seed does not appear in the name as itself (a name cut and hashed, a seed not an int)."""
    if not isinstance(run.seed, int) or isinstance(run.seed, bool):
        return None
    entry = {CONFIG_ARG: run.config_arg, **run.overrides, SEED: _SENTINEL_SEED}
    name = run_name(entry)
    if name.count(str(_SENTINEL_SEED)) != 1:
        return None
    template = name.replace(str(_SENTINEL_SEED), "{seed}")
    return template if template.replace("{seed}", str(run.seed)) == run.name else None


def seed_groups(runs: Sequence[Run], run_dirs: Callable[[Run], Path], size: int) -> list[list[Run]]:
    """Runs in groups of at most `size` seeds of one arm that stand at the same step (so that one
    program can train them together); a run whose name cannot carry its seed stays alone."""
    if size <= 1:
        return [[r] for r in runs]
    groups: dict[tuple, list[list[Run]]] = {}
    order: list[list[Run]] = []
    for run in runs:
        key = (run.arm, status(run, run_dirs(run))) if seed_template(run) else (id(run),)
        chunks = groups.setdefault(key, [])
        if not chunks or len(chunks[-1]) >= size:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(run)
    return order


# -- running ---------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    done: list[str]  # finished runs of this shard (before or now)
    failed: dict[str, Path]  # run -> its log
    elapsed_s: float


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(json_safe(value, strict=False), indent=1) + "\n")
    os.replace(tmp, path)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(empty log)"


@dataclasses.dataclass
class _Job:
    runs: list[Run]  # one run, or seeds of one arm trained in one process
    run_dirs: list[Path]
    proc: subprocess.Popen
    log: Any  # the open log file (the first run's)
    started: str
    t0: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.runs[0].name if len(self.runs) == 1 else f"{self.runs[0].arm} seeds " + \
            "+".join(str(r.seed) for r in self.runs)


def _start(runs: list[Run], workdir: Path, env: dict, train_script: Path) -> _Job:
    run_dirs = [workdir / r.name for r in runs]
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / DONE_FILE).unlink(missing_ok=True)
    command = (train_command(runs[0], run_dirs[0], train_script) if len(runs) == 1
               else group_command(runs, workdir, train_script))
    started = datetime.datetime.now().isoformat(timespec="seconds")
    for run_dir in run_dirs[1:]:  # one process, one log: the others point at it
        with open(run_dir / LOG_FILE, "a", encoding="utf-8") as other:
            other.write(f"==== {started}  trained with {run_dirs[0].name} in one process: "
                        f"see ../{run_dirs[0].name}/{LOG_FILE}\n")
    log = open(run_dirs[0] / LOG_FILE, "a", encoding="utf-8")
    log.write(f"==== {started}  {shlex.join(command)}\n")
    log.flush()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return _Job(runs, run_dirs, proc, log, started)


def _end(job: _Job) -> dict[str, str | None]:
    """Records the ended attempt (and DONE for each run that finished): run -> None, or why it failed."""
    job.log.close()
    code, wall_s = job.proc.returncode, time.monotonic() - job.t0
    outcome = {}
    for run, run_dir in zip(job.runs, job.run_dirs):
        path = run_dir / RUN_FILE
        attempts = json.loads(path.read_text())["attempts"] if path.exists() else []
        attempt = {"started": job.started, "wall_s": wall_s, "returncode": code}
        if len(job.runs) > 1:
            attempt["trained_with"] = [r.name for r in job.runs]  # wall_s is the whole group's
        attempts.append(attempt)
        _write_json(path, {**run.record(), "command": job.proc.args, "attempts": attempts})
        if code != 0:
            outcome[run.name] = f"exit {code}"
        elif not any(r["step"] == run.steps for r in read_metrics(run_dir, split="validation")):
            outcome[run.name] = f"exit 0 without validation metrics at step {run.steps}"
        else:
            outcome[run.name] = None
            _write_json(run_dir / DONE_FILE, {"steps": run.steps, "wall_s": sum(a["wall_s"] for a in attempts)})
    return outcome


def run_sweep(sweep: Sweep, workdir: str | Path, *, jobs: int = 1, shard_spec: tuple[int, int] = (0, 1),
              seeds_per_process: int = 1, dry_run: bool = False,
              out: Callable[[str], None] = lambda s: print(s, flush=True),
              train_script: Path = TRAIN_SCRIPT, poll_s: float = 0.2) -> SweepResult:
    """Trains this shard's unfinished runs, `jobs` processes at a time, one line of `out` per
    change; a failed run is reported with its log and does not stop the others.

    `seeds_per_process` > 1 trains up to that many seeds of one arm in one process, vmapped
    (`scripts/train.py --seeds`); each still gets its own run dir, as if trained alone."""
    workdir = Path(workdir).resolve()
    runs = shard(sweep.runs, *shard_spec)
    done = [r.name for r in runs if is_finished(r, workdir / r.name)]
    todo = seed_groups([r for r in runs if r.name not in done], lambda r: workdir / r.name, seeds_per_process)
    n_todo = lambda: sum(map(len, todo))  # noqa: E731
    mine = f", {len(runs)} in shard {shard_spec[0]}/{shard_spec[1]}" if shard_spec[1] > 1 else ""
    together = f"; up to {seeds_per_process} seeds per process" if seeds_per_process > 1 else ""
    out(f"sweep {sweep.spec}: {len(sweep.runs)} runs{mine}; {len(done)} finished, {n_todo()} to do; "
        f"jobs {jobs}{together}; workdir {workdir}")
    if dry_run:
        statuses = {r.name: status(r, workdir / r.name) for r in runs}
        for run in (r for r in runs if r.name in done):
            out(f"  {statuses[run.name]:>12}  {run.name}")
        for group in todo:
            command = shlex.join(train_command(group[0], workdir / group[0].name, train_script) if len(group) == 1
                                 else group_command(group, workdir, train_script))
            for run in group:
                out(f"  {statuses[run.name]:>12}  {run.name}")
            out(f"{'':16}{command}")
        return SweepResult(done, {}, 0.0)
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json(workdir / SWEEP_FILE, {"config": sweep.spec, "runs": [r.record() for r in sweep.runs]})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if jobs > 1:  # N processes on one accelerator: each takes what it needs, not 75% of it
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    start, failed, running = time.monotonic(), {}, []

    def progress(event: str) -> None:
        out(f"[{_clock(time.monotonic() - start)}] {len(done)} done, {sum(len(j.runs) for j in running)} running, "
            f"{len(failed)} failed, {n_todo()} to do | {event}")

    try:
        while todo or running:
            while todo and len(running) < max(jobs, 1):
                job = _start(todo.pop(0), workdir, env, train_script)
                running.append(job)
                progress(f"started {job.name}")
            time.sleep(poll_s)
            for job in [j for j in running if j.proc.poll() is not None]:
                running.remove(job)
                for (name, why), run_dir in zip(_end(job).items(), job.run_dirs):
                    if why is None:
                        done.append(name)
                        progress(f"done {name} ({time.monotonic() - job.t0:.1f} s)")
                    else:
                        failed[name] = job.run_dirs[0] / LOG_FILE
                        progress(f"FAILED {name} ({why}): {_last_line(failed[name])} -- log: {failed[name]}")
    except KeyboardInterrupt:
        for job in running:  # only the processes this sweep started
            job.proc.terminate()
        for job in running:
            try:
                job.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
            _end(job)
        out(f"interrupted: {len(running)} processes stopped; run the same command again to resume them.")
        raise
    elapsed = time.monotonic() - start
    out(f"sweep ended in {_clock(elapsed)}: {len(done)} done, {len(failed)} failed"
        + "".join(f"\n  FAILED {n}: see {log}" for n, log in failed.items()))
    return SweepResult(done, failed, elapsed)
