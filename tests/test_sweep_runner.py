"""Running sweeps (ltf/sweep_runner.py): shards, commands; end to end on a smoke sweep (parallel
runs, skip, resume, report); seeds of an arm in one process; a failing run reported while the
others finish."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ltf import report, sweep, sweep_runner, train
from ltf.writers import read_metrics

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tlstm_lm.py"


@pytest.fixture(autouse=True)
def _caches(tmp_path_factory, monkeypatch):
    # The runs are processes; they inherit the run's compilation cache from conftest.py, so
    # seed 1 reuses what seed 0 compiled.
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ltf-cache"))


def run_cli(*args, timeout=240):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "sweep.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 18, 25])
def test_shards_partition_the_runs(count):
    runs = sweep.load_sweep(str(CONFIG)).runs
    shards = [sweep_runner.shard(runs, i, count) for i in range(count)]
    names = [r.name for s in shards for r in s]
    assert sorted(names) == sorted(r.name for r in runs) and len(names) == len(set(names))
    assert [r.name for r in shards[0]] == [r.name for r in runs[::count]]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ValueError, match="0 <= i < n"):
        sweep_runner.parse_shard(text)


def test_overrides_reach_the_command():
    run = next(r for r in sweep.load_sweep(str(CONFIG)).runs if "softmax" in r.name and r.seed == 2)
    command = sweep_runner.train_command(run, Path("/w/x"))
    assert "--config.model.attention.window=64" in command and "--config.seed=2" in command
    assert f"--config={CONFIG}" in command and "--workdir=/w/x" in command


def _final(run_dir, split, key="bpc"):
    steps = json.loads((run_dir / "config.json").read_text())["train"]["steps"]
    return next(r[key] for r in read_metrics(run_dir, split=split) if r["step"] == steps)


def _sweep_with_a_stopped_run(tmp_path):
    spec, workdir = f"{CONFIG}:arms=lstm+tlstm,seeds=2,smoke", tmp_path / "sweep"
    runs = sweep.load_sweep(spec).runs
    stopped = runs[3]  # stopped early, as by a preemption, before the sweep starts
    train.train_and_evaluate(stopped.load_config(), workdir / stopped.name, stop_at_step=3)
    return spec, workdir, runs, stopped


@pytest.mark.slow
def test_a_dry_run_lists_every_run_with_its_status_and_trains_nothing(tmp_path):
    spec, workdir, runs, stopped = _sweep_with_a_stopped_run(tmp_path)
    lines = []
    sweep_runner.run_sweep(sweep.load_sweep(spec), workdir, dry_run=True, out=lines.append)
    assert f"at step 3  {stopped.name}  (arm tlstm)" in "\n".join(lines)
    assert f"to do  {runs[0].name}  (arm lstm)" in "\n".join(lines)
    assert not (workdir / runs[0].name).exists()


def test_a_workdir_given_with_a_tilde_is_in_the_home_directory(tmp_path, monkeypatch):
    # '~/runs' quoted in the shell reaches the sweep unexpanded: it must not become ./~/runs
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    lines = []
    sweep_runner.run_sweep(sweep.load_sweep(f"{CONFIG}:arms=lstm,seeds=1,smoke"), "~/runs", dry_run=True,
                           out=lines.append)
    assert f"workdir {tmp_path / 'home' / 'runs'}" in lines[0]
    assert f"--workdir={tmp_path / 'home' / 'runs'}/" in "\n".join(lines)
    assert not (tmp_path / "~").exists()


# Four training processes, ~70 s on 2 cores: its parts are each in the default suite (the dry
# run's statuses above, train.py and resuming in test_train.py, the report in test_report.py).
@pytest.mark.slow
def test_a_smoke_sweep_runs_in_parallel_skips_finished_runs_resumes_stopped_ones_and_reports(tmp_path):
    spec, workdir, runs, stopped = _sweep_with_a_stopped_run(tmp_path)

    first = run_cli("--config", spec, "--workdir", workdir, "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 running" in first.stdout and "4 done, 0 running, 0 failed, 0 to do" in first.stdout
    assert "Resumed from" in (workdir / stopped.name / "log.txt").read_text()
    for run in runs:
        assert (workdir / run.name / "DONE").exists()
        written = json.loads((workdir / run.name / "config.json").read_text())
        assert written == json.loads(json.dumps(run.load_config().to_dict()))  # the overrides arrived

    logs = {r.name: (workdir / r.name / "log.txt").read_text() for r in runs}
    second = run_cli("--config", spec, "--workdir", workdir, "--jobs", "2", "--report")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "4 finished, 0 to do" in second.stdout and "started" not in second.stdout
    assert logs == {r.name: (workdir / r.name / "log.txt").read_text() for r in runs}

    rows = list(csv.DictReader(open(workdir / "results.csv")))
    assert [row["arm"] for row in rows] == ["smoke,cell=lstm", "smoke,cell=tlstm"]
    md = (workdir / "results.md").read_text()
    for row in rows:
        assert row["n"] == "2" and row["seeds"] == "0 1"
        dirs = [workdir / r.name for r in runs if r.arm == row["arm"]]
        for split in ("validation", "test"):
            values = [_final(d, split) for d in dirs]
            mean, std = np.mean(values), np.std(values, ddof=1)
            assert float(row[f"{split}_bpc_mean"]) == pytest.approx(mean, rel=1e-12)
            assert float(row[f"{split}_bpc_std"]) == pytest.approx(std, rel=1e-9)
            assert f"{mean:.4f} ± {std:.4f}" in md
        assert float(row["wall_s_mean"]) > 0
    # one row per arm, named by its label (the config's arm name); the csv keeps the run names
    assert md.count("| `lstm` |") == 1 and md.count("| `tlstm` |") == 1
    assert [row["label"] for row in rows] == ["lstm", "tlstm"]
    for png in ("learning_curves.png", "final_bpc.png"):
        assert (workdir / png).stat().st_size > 1000
    text = {p: (workdir / p).read_text() for p in ("results.md", "results.csv")}
    report.write_report(workdir)  # from a notebook: the runs come from W/sweep.json
    assert text == {p: (workdir / p).read_text() for p in ("results.md", "results.csv")}


@pytest.mark.slow  # the vmapped training itself is checked by test_train; this is the sweep's wiring
def test_seeds_of_an_arm_train_in_one_process_each_in_its_own_run_dir(tmp_path):
    spec, workdir = f"{CONFIG}:arms=lstm+tlstm,seeds=3,smoke", tmp_path / "sweep"
    the_sweep = sweep.load_sweep(spec)
    groups = sweep_runner.seed_groups(the_sweep.runs, lambda r: workdir / r.name, size=2)
    assert [[(r.arm, r.seed) for r in g] for g in groups] == [
        [("smoke,cell=lstm", 0), ("smoke,cell=lstm", 1)], [("smoke,cell=tlstm", 0), ("smoke,cell=tlstm", 1)],
        [("smoke,cell=lstm", 2)], [("smoke,cell=tlstm", 2)]]
    command = sweep_runner.group_command(groups[0], workdir)
    assert "--seeds=0,1" in command and f"--workdir={workdir}/smoke,cell=lstm,seed={{seed}}" in command
    assert not any(c.startswith("--config.seed") for c in command)

    lines = []
    result = sweep_runner.run_sweep(sweep.load_sweep(f"{CONFIG}:arms=lstm,seeds=2,smoke"), workdir,
                             seeds_per_process=2, out=lines.append)
    assert result.done == ["smoke,cell=lstm,seed=0", "smoke,cell=lstm,seed=1"] and not result.failed
    assert "started smoke,cell=lstm seeds 0+1" in "\n".join(lines)
    for seed in (0, 1):
        run_dir = workdir / f"smoke,cell=lstm,seed={seed}"
        assert json.loads((run_dir / "config.json").read_text())["seed"] == seed
        assert (run_dir / "DONE").exists() and np.isfinite(_final(run_dir, "validation"))
        attempt = json.loads((run_dir / "sweep_run.json").read_text())["attempts"][-1]
        assert attempt["trained_with"] == ["smoke,cell=lstm,seed=0", "smoke,cell=lstm,seed=1"]
    assert "see ../smoke,cell=lstm,seed=0/log.txt" in (workdir / "smoke,cell=lstm,seed=1" / "log.txt").read_text()
    assert _final(workdir / "smoke,cell=lstm,seed=0", "validation") != \
        _final(workdir / "smoke,cell=lstm,seed=1", "validation")


@pytest.mark.slow
def test_a_failing_run_is_reported_with_its_log_and_the_others_finish(tmp_path):
    # A run that passes validation and fails when it trains: its data file is missing. (A config
    # that fails validation stops the whole sweep before anything runs: see test_overrides_...)
    config = tmp_path / "failing.py"
    config.write_text(textwrap.dedent(f"""
        import importlib.util
        _spec = importlib.util.spec_from_file_location("tlstm_lm", {str(CONFIG)!r})
        _base = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_base)
        get_config = _base.get_config

        def get_sweep(arg):
            return [{{"config_arg": "smoke", "data.corpus": "text", "data.data_dir": "/nonexistent/x.txt"}},
                    {{"config_arg": "smoke", "model.cell": "lstm"}}]
    """))
    workdir = tmp_path / "sweep"
    result = run_cli("--config", config, "--workdir", workdir, "--jobs", "2", "--report")
    assert result.returncode != 0
    bad = "smoke,corpus=text,data_dir=_nonexistent_x.txt"
    log = workdir / bad / "log.txt"
    assert f"FAILED {bad} (exit 1): FileNotFoundError: data.data_dir: no file or folder" in result.stdout
    assert f"log: {log}" in result.stdout and f"FAILED {bad}: see {log}" in result.stdout
    assert "1 done, 0 running, 1 failed, 0 to do" in result.stdout
    assert (workdir / "smoke,cell=lstm" / "DONE").exists()
    assert not (workdir / bad / "DONE").exists()
    rows = {row["arm"]: row for row in csv.DictReader(open(workdir / "results.csv"))}
    assert rows["smoke,cell=lstm"]["n"] == "1" and rows["smoke,cell=lstm"]["validation_bpc_std"] == ""
    assert rows[bad]["n"] == "0"
    assert f"Left out (not finished): `{bad}`" in (workdir / "results.md").read_text()


# A stand-in for scripts/train.py: logs its start and end in the sweep's trained.log, sleeps
# FAKE_TRAIN_S, writes the final validation record, and returns at once for a finished run.
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    run_dir = Path(next(a for a in sys.argv if a.startswith("--workdir=")).split("=", 1)[1])
    steps = next(r["steps"] for r in json.loads((run_dir.parent / "sweep.json").read_text())["runs"]
                 if r["name"] == run_dir.name)
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists() and f'"step": {steps}, "split": "validation"' in metrics.read_text():
        sys.exit(0)
    def log(event):
        with open(run_dir.parent / "trained.log", "a") as f:
            f.write(f"{event} {run_dir.name} {os.getpid()}\\n")
    log("start")
    time.sleep(float(os.environ["FAKE_TRAIN_S"]))
    metrics.write_text(json.dumps({"step": steps, "split": "validation", "loss": 1.0}) + "\\n")
    log("end")
""")
WORKER = textwrap.dedent("""
    import sys
    from ltf import sweep, sweep_runner
    sweep_runner.run_sweep(sweep.load_sweep(sys.argv[1]), sys.argv[2], jobs=int(sys.argv[3]),
                           train_script=sys.argv[4], poll_s=0.05, watch_s=0.2)
""")


def _worker(tmp_path, workdir, jobs, train_s):
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    env = dict(os.environ, FAKE_TRAIN_S=str(train_s))
    return subprocess.Popen([sys.executable, "-c", WORKER, f"{CONFIG}:arms=lstm+tlstm,seeds=2,smoke", str(workdir),
                             str(jobs), str(fake)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=REPO, start_new_session=True)


def _events(workdir):
    return [line.split()[:2] for line in (workdir / "trained.log").read_text().splitlines()]


def test_two_workers_on_one_workdir_train_each_run_once(tmp_path):
    """The same sweep started twice on one workdir: every run trained by one worker, once, and
    both workers end with every run done."""
    workdir = tmp_path / "sweep"
    workers = [_worker(tmp_path, workdir, 2, 0.5) for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    names = [r.name for r in sweep.load_sweep(f"{CONFIG}:arms=lstm+tlstm,seeds=2,smoke").runs]
    events = _events(workdir)
    assert sorted(name for event, name in events if event == "start") == sorted(names)
    assert sorted(name for event, name in events if event == "end") == sorted(names)
    assert all("sweep ended" in out and "4 done, 0 failed" in out for out in outputs), outputs
    assert any("another worker holds it" in out for out in outputs), outputs


def test_a_run_whose_worker_is_killed_is_taken_over_by_the_other(tmp_path):
    """Worker A is killed (SIGKILL, with its training process) in the middle of a run; worker B,
    which skipped that run, takes it over and finishes the sweep."""
    workdir = tmp_path / "sweep"
    a = _worker(tmp_path, workdir, 1, 60)
    deadline = time.monotonic() + 60
    while not ((workdir / "trained.log").exists() and _events(workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    (_, held), = _events(workdir)
    b = _worker(tmp_path, workdir, 1, 0.2)
    while sum(e == "end" for e, _ in _events(workdir)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(timeout=10)
    out = b.communicate(timeout=60)[0]
    assert b.returncode == 0 and f"taking over {held}" in out and "4 done, 0 failed" in out, out
    assert [name for e, name in _events(workdir) if e == "start"].count(held) == 2  # A's, then B's
    assert (workdir / held / "DONE").exists()


def test_workdirs_under_their_old_long_names_are_renamed_and_resumed(tmp_path):
    """A sweep begun before long names kept their seed (the whole name hashed) picks its runs up
    under the new names: moved, their record renamed, nothing trained again or lost."""
    pad = "x" * 90
    the_sweep = sweep.Sweep("s", tuple(sweep.expand(str(CONFIG), [
        {"config_arg": "smoke", "model.cell": "lstm", "data.data_dir": pad, "seed": s} for s in (0, 1)])))
    old = [sweep.legacy_run_name({"config_arg": r.config_arg, **r.overrides}) for r in the_sweep.runs]
    assert old != [r.name for r in the_sweep.runs]
    for name in old:
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("kept\n")
        (tmp_path / name / sweep.RUN_FILE).write_text(json.dumps({"name": name, "attempts": []}))
    (tmp_path / the_sweep.runs[1].name).mkdir()  # both names there: nothing is moved over it
    lines = []
    moved = sweep_runner.rename_legacy_dirs(the_sweep.runs, tmp_path, lines.append, dry_run=True)
    assert moved == [] and (tmp_path / old[0]).is_dir() and "would rename" in lines[0]
    moved = sweep_runner.rename_legacy_dirs(the_sweep.runs, tmp_path, lines.append)
    new = the_sweep.runs[0].name
    assert moved == [(old[0], new)] and not (tmp_path / old[0]).exists()
    assert (tmp_path / new / "metrics.jsonl").read_text() == "kept\n"
    assert json.loads((tmp_path / new / sweep.RUN_FILE).read_text())["name"] == new
    assert (tmp_path / old[1]).is_dir() and "leaving the old one" in lines[-1]
    assert sweep_runner.seed_template(the_sweep.runs[0]) == sweep_runner.seed_template(the_sweep.runs[1])


def test_parallel_jobs_share_the_cores_and_keep_the_callers_settings(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sweep_runner.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert "OMP_NUM_THREADS" not in sweep_runner.job_environment(1)
    assert sweep_runner.job_environment(2)["OMP_NUM_THREADS"] == "2"
    assert sweep_runner.job_environment(8)["OMP_NUM_THREADS"] == "1"
    assert sweep_runner.job_environment(2)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert sweep_runner.job_environment(2)["OMP_NUM_THREADS"] == "3"
