"""Running a sweep: each of its runs trained by `scripts/train.py` in its own process and
workdir, `jobs` at a time, with their status read back from the workdirs.

    sweep = ltf.sweep.load_sweep("configs/tlstm_lm.py:arms=lstm+tlstm,seeds=2,smoke")
    result = run_sweep(sweep, "runs/s", jobs=2)          # skips finished runs, resumes the others
    ltf.report.write_report("runs/s")                     # results.md, results.csv, figures

Finished. The runner writes `W/<run>/DONE` (JSON: steps, wall time) when the run's process
exits 0 and its metrics hold the validation record of the final step, `train.steps`. A run
counts as finished when DONE is there with the steps its config asks for now; any other run is
started again, and `train_and_evaluate` resumes it from its latest checkpoint (or returns at
once when it had in fact finished).

One worker per run: before it starts a run, a worker takes the run's lock (`ltf.run_lock`,
held by the worker and its training process while they live); runs that another worker holds
(the same sweep started twice on one workdir, or machines sharing it without `--shard`) are
skipped and watched: counted done when that worker finishes them, picked up when it ends
without finishing them.

Shards (`--shard i/n`) deal the sweep's runs i, i+n, ... to one machine; `seeds_per_process`
trains seeds of one arm together in one process (`scripts/train.py --seeds`). What the runner
writes into the sweep workdir W is listed in `ltf.sweep`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ltf.run_lock import RunLock, holder
from ltf.sweep import CONFIG_ARG, RUN_FILE, SEED, SWEEP_FILE, Run, Sweep, legacy_run_name, seed_template
from ltf.writers import json_safe, read_metrics

LOG_FILE, DONE_FILE = "log.txt", "DONE"
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train.py"


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


def rename_legacy_dirs(runs: Sequence[Run], workdir: Path, out: Callable[[str], None],
                       dry_run: bool = False) -> list[tuple[str, str]]:
    """Moves the workdirs of runs named as ltf named them until December 2026 (a long name whose
    hash covered the seed: `ltf.sweep.legacy_run_name`) to their names now, so that a sweep
    started before resumes them instead of training them again. Skipped, and said, where the new
    name exists too or another worker holds the old one. Returns (old, new) per run moved."""
    moved = []
    for run in runs:
        old = legacy_run_name({CONFIG_ARG: run.config_arg, **run.overrides})
        src, dst = workdir / old, workdir / run.name
        if old == run.name or not src.is_dir():
            continue
        if dst.exists():
            out(f"note: {src} is this run's workdir under its old name, and {dst} exists too; "
                f"using {dst.name} and leaving the old one as it is.")
            continue
        if dry_run:
            out(f"would rename {old} -> {run.name} (run names now keep their seed out of the hash)")
            continue
        lock = RunLock.acquire(src)
        if lock is None:
            out(f"note: not renaming {src}: another worker holds it ({holder(src)}); run again once it ends.")
            continue
        try:
            src.rename(dst)
            record = dst / RUN_FILE
            if record.exists():  # ltf.report reads the name from here when sweep.json is absent
                _write_json(record, {**json.loads(record.read_text()), "name": run.name})
        finally:
            lock.release()
        out(f"renamed {old} -> {run.name} (run names now keep their seed out of the hash)")
        moved.append((old, run.name))
    return moved


def train_command(run: Run, run_dir: Path, train_script: Path = TRAIN_SCRIPT) -> list[str]:
    """scripts/train.py with the run's config and its overrides as --config.x=v flags."""
    return _command(run, f"--workdir={run_dir}", train_script)


def group_command(runs: Sequence[Run], workdir: Path, train_script: Path = TRAIN_SCRIPT) -> list[str]:
    """scripts/train.py training the seeds of one arm at once (`--seeds`), each in its own run dir."""
    template = seed_template(runs[0])
    assert template is not None and all(r.arm == runs[0].arm and seed_template(r) == template for r in runs), \
        "not one arm's seeds"
    seedless = dataclasses.replace(runs[0], overrides={k: v for k, v in runs[0].overrides.items() if k != SEED})
    return _command(seedless, f"--workdir={workdir / template}", train_script,
                    f"--seeds={','.join(str(r.seed) for r in runs)}")


def _command(run: Run, workdir_flag: str, train_script: Path, *extra: str) -> list[str]:
    spec = str(Path(run.config).resolve()) + (f":{run.config_arg}" if run.config_arg else "")
    flag = lambda v: repr(v) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return [sys.executable, str(train_script), f"--config={spec}", workdir_flag, *extra,
            *(f"--config.{k}={flag(v)}" for k, v in {**run.shared, **run.overrides}.items())]


def seed_groups(runs: Sequence[Run], run_dirs: Callable[[Run], Path], size: int) -> list[list[Run]]:
    """Runs in groups of at most `size` seeds of one arm that stand at the same step (so that one
    program can train them together); a run whose name cannot carry its seed stays alone."""
    if size <= 1:
        return [[r] for r in runs]
    groups: dict[tuple, list[list[Run]]] = {}
    order: list[list[Run]] = []
    for run in runs:
        template = seed_template(run)  # one template: seeds of one arm, names alike but for the seed
        key = (template, status(run, run_dirs(run))) if template else (id(run),)
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
    locks: list[RunLock]  # one per run, shared with the training process
    t0: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.runs[0].name if len(self.runs) == 1 else f"{self.runs[0].arm} seeds " + \
            "+".join(str(r.seed) for r in self.runs)


def _start(runs: list[Run], locks: list[RunLock], workdir: Path, env: dict, train_script: Path) -> _Job:
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
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            pass_fds=[lock.fd for lock in locks])  # the runs stay locked while it lives
    return _Job(runs, run_dirs, proc, log, started, locks)


def _end(job: _Job) -> dict[str, str | None]:
    """Records the ended attempt (and DONE for each run that finished): run -> None, or why it failed."""
    job.log.close()
    code, wall_s = job.proc.returncode, time.monotonic() - job.t0
    try:
        return _record(job, code, wall_s)
    finally:  # DONE written first: a worker that takes the lock next sees the run finished
        for lock in job.locks:
            lock.release()


def _record(job: _Job, code: int, wall_s: float) -> dict[str, str | None]:
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


def job_environment(jobs: int) -> dict:
    """The environment of each train.py process when `jobs` run at once: on one accelerator each
    takes the memory it needs, not 75% of it; on the CPU each gets its share of the cores for
    `ltf.cpu_kernel`'s threads (two processes of two threads each on two cores ran the layer's
    step in 1.15x the time of one thread each). Settings the caller made are kept."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if jobs > 1:
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // jobs)))
    return env


def run_sweep(sweep: Sweep, workdir: str | Path, *, jobs: int = 1, shard_spec: tuple[int, int] = (0, 1),
              seeds_per_process: int = 1, dry_run: bool = False,
              out: Callable[[str], None] = lambda s: print(s, flush=True),
              train_script: Path = TRAIN_SCRIPT, poll_s: float = 0.2, watch_s: float = 5.0) -> SweepResult:
    """Trains this shard's unfinished runs, `jobs` processes at a time, one line of `out` per
    change; a failed run is reported with its log and does not stop the others. Runs that
    another worker holds are looked at every `watch_s` seconds until it has finished them (or
    ended without, and this worker trains them).

    `seeds_per_process` > 1 trains up to that many seeds of one arm in one process, vmapped
    (`scripts/train.py --seeds`); each still gets its own run dir, as if trained alone."""
    workdir = Path(workdir).expanduser().resolve()  # '~/runs' quoted in the shell is still the home's
    runs = shard(sweep.runs, *shard_spec)
    rename_legacy_dirs(runs, workdir, out, dry_run=dry_run)
    done = [r.name for r in runs if is_finished(r, workdir / r.name)]
    todo = seed_groups([r for r in runs if r.name not in done], lambda r: workdir / r.name, seeds_per_process)
    n_todo = lambda: sum(map(len, todo))  # noqa: E731
    mine = f", {len(runs)} in shard {shard_spec[0]}/{shard_spec[1]}" if shard_spec[1] > 1 else ""
    together = f"; up to {seeds_per_process} seeds per process" if seeds_per_process > 1 else ""
    out(f"sweep {sweep.spec}: {len(sweep.runs)} runs{mine}; {len(done)} finished, {n_todo()} to do; "
        f"jobs {jobs}{together}; workdir {workdir}")
    if dry_run:
        statuses = {r.name: status(r, workdir / r.name) for r in runs}
        arm_of = {r.name: f"  (arm {r.label})" if r.label else "" for r in runs}  # the report's row
        for run in (r for r in runs if r.name in done):
            out(f"  {statuses[run.name]:>12}  {run.name}{arm_of[run.name]}")
        for group in todo:
            command = shlex.join(train_command(group[0], workdir / group[0].name, train_script) if len(group) == 1
                                 else group_command(group, workdir, train_script))
            for run in group:
                out(f"  {statuses[run.name]:>12}  {run.name}{arm_of[run.name]}")
            out(f"{'':16}{command}")
        return SweepResult(done, {}, 0.0)
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json(workdir / SWEEP_FILE, {"config": sweep.spec, "runs": [r.record() for r in sweep.runs]})
    env = job_environment(jobs)
    start, failed, running = time.monotonic(), {}, []
    elsewhere: list[Run] = []  # held by other workers: watched, taken over if they end unfinished
    last_watch = time.monotonic()

    def progress(event: str) -> None:
        held = f", {len(elsewhere)} held by other workers" if elsewhere else ""
        out(f"[{_clock(time.monotonic() - start)}] {len(done)} done, {sum(len(j.runs) for j in running)} running, "
            f"{len(failed)} failed, {n_todo()} to do{held} | {event}")

    def claim(group: list[Run]) -> tuple[list[Run], list[RunLock]]:
        """The runs of `group` this worker takes now (locked here, unfinished), with their locks."""
        mine, locks = [], []
        for run in group:
            lock = RunLock.acquire(workdir / run.name)
            if lock is None:
                elsewhere.append(run)
                progress(f"skipped {run.name}: another worker holds it ({holder(workdir / run.name)})")
            elif is_finished(run, workdir / run.name):  # finished by another worker since the start
                lock.release()
                done.append(run.name)
                progress(f"done {run.name} (by another worker)")
            else:
                mine.append(run)
                locks.append(lock)
        return mine, locks

    def watch() -> None:
        for run in list(elsewhere):
            if is_finished(run, workdir / run.name):
                elsewhere.remove(run)
                done.append(run.name)
                progress(f"done {run.name} (by another worker)")
            elif (lock := RunLock.acquire(workdir / run.name)) is not None:
                lock.release()  # claimed again when its turn comes
                elsewhere.remove(run)
                todo.append([run])
                progress(f"taking over {run.name}: the worker that held it ended before finishing it")

    try:
        while todo or running or elsewhere:
            while todo and len(running) < max(jobs, 1):
                runs_now, locks = claim(todo.pop(0))
                if runs_now:
                    job = _start(runs_now, locks, workdir, env, train_script)
                    running.append(job)
                    progress(f"started {job.name}")
            time.sleep(poll_s)
            if elsewhere and time.monotonic() - last_watch >= watch_s:
                last_watch = time.monotonic()
                watch()
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
