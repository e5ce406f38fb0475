"""End to end: every config's smoke run, exact resume, learning, and the errors users meet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ltf import train
from ltf.checkpoint import Checkpointer
from ltf.config_lib import load_config, load_module, validate
from ltf.sweep import apply_overrides
from ltf.writers import read_metrics

from conftest import SHARED_DATA, require_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.py"))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LTF_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ltf-cache"))


def smoke(name="tlstm_lm.py", extra=""):
    return load_config(str(REPO / "configs" / name) + ":smoke" + ("," + extra if extra else ""))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_runs_its_smoke_setting(name, tmp_path):
    config = smoke(name)
    # A config whose smoke run needs real files names them (SMOKE_DATA: field -> ../shared/data/<x>).
    for field, folder in getattr(load_module(str(REPO / "configs" / name)), "SMOKE_DATA", {}).items():
        apply_overrides(config, {field: str(require_file(SHARED_DATA / folder))})
    metrics = train.train_and_evaluate(config, tmp_path)
    assert np.isfinite(metrics["validation"]["loss"])
    assert (tmp_path / "config.json").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model"]["cell"] == config.model.cell
    logged = read_metrics(tmp_path)
    assert {"train", "validation"} <= {m["split"] for m in logged}
    assert any(p.name.startswith("events") for p in (tmp_path / "tensorboard").rglob("*"))
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == config.train.steps


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["cell=lstm_noforget", "cell=tlstm,chrono", "attention=sparsemax,window=4",
                                   "cell=adaptive,attention=topk"])
def test_ablation_arms_run(extra, tmp_path):
    config = smoke(extra=extra)
    if "topk" in extra:
        config.model.attention.top_k = 3
    assert np.isfinite(train.train_and_evaluate(config, tmp_path)["validation"]["loss"])


def _final_params(workdir, config):
    task, tx, _ = train.build(config)
    state, _, _ = Checkpointer(workdir / "checkpoints").restore(train.init_state(task.model, tx, config))
    return state


@pytest.mark.slow
def test_a_stopped_and_resumed_run_ends_exactly_where_an_uninterrupted_run_ends(tmp_path):
    config = smoke(extra="cell=time_aware")
    config.model.dropout = 0.3  # the dropout rng must resume too
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.train_and_evaluate(config, straight)
    train.train_and_evaluate(config, resumed, stop_at_step=4)
    assert Checkpointer(resumed / "checkpoints").latest_step() == 4
    train.train_and_evaluate(config, resumed)
    a, b = _final_params(straight, config), _final_params(resumed, config)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    last = lambda d: [m for m in read_metrics(d) if m["step"] == config.train.steps]
    strip = lambda ms: [{k: v for k, v in m.items() if k != "tokens_per_s"} for m in ms]
    assert strip(last(straight)) == strip(last(resumed))


@pytest.mark.slow
def test_loss_falls_on_a_learnable_stream(tmp_path):
    text = tmp_path / "pattern.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 300)
    config = smoke(extra="cell=lstm")
    config.data.corpus = "text"
    config.data.data_dir = str(text)
    config.model.update(d_hidden=32, d_embed=16, dropout=0.0)
    config.train.update(steps=150, eval_every=150, checkpoint_every=150, log_every=10)
    config.opt.update(lr=1e-2, warmup_steps=5)
    train.train_and_evaluate(config, tmp_path / "run")
    losses = [m["loss"] for m in read_metrics(tmp_path / "run", split="train")]
    assert losses[-1] < 0.35 * losses[0], losses


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = smoke(extra="cell=lstm")
    train.train_and_evaluate(config, tmp_path, stop_at_step=3)
    from ltf.tasks import language as task_lib

    real = task_lib.token_cross_entropy
    monkeypatch.setattr(task_lib, "token_cross_entropy", lambda *a: (real(*a)[0] * np.nan, real(*a)[1]))
    with pytest.raises(train.NonFiniteLossError, match=r"at step 4.*step 3"):
        train.train_and_evaluate(config, tmp_path)
    state = _final_params(tmp_path, config)
    assert int(state.step) == 3
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))


@pytest.mark.parametrize("field,value,match", [
    ("model.cell", "no_such_cell", "model.cell.*allowed values"),
    ("model.d_hidden", 0, "model.d_hidden"),
    ("opt.name", "rmsprop", "opt.name"),
    ("opt.weight_decay", 0.1, r"opt.weight_decay.*'adamw' only \(got 'adam'\)"),  # adam would ignore it
    ("model.attention.normaliser", "sparse", "model.attention.normaliser"),
])
def test_bad_config_values_name_the_field(field, value, match):
    config = smoke()
    section, key = field.rsplit(".", 1)
    config.unlock()
    target = config
    for part in section.split("."):
        target = target[part]
    target[key] = value
    with pytest.raises(ValueError, match=match):
        validate(config)


def test_incompatible_cell_option_is_named():
    config = smoke(extra="cell=lstm")
    config.model.cell_options.adaptive = True
    with pytest.raises(ValueError, match="cell_options.*adaptive"):
        validate(config)


def test_missing_data_file_says_how_to_supply_it(tmp_path):
    config = smoke(extra="corpus=tiny_shakespeare")
    config.data.data_dir = str(tmp_path / "nowhere" / "input.txt")
    with pytest.raises(Exception, match="input.txt"):
        train.train_and_evaluate(config, tmp_path / "run")


def test_the_script_rejects_an_unknown_config_key(tmp_path):
    out = subprocess.run(
        [sys.executable, "scripts/train.py", "--config", "configs/tlstm_lm.py:smoke",
         "--config.model.hiden=3", "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "hiden" in out.stderr


@pytest.mark.slow
def test_seeds_trained_at_once_match_separate_runs_and_resume_as_either(tmp_path):
    config = smoke(extra="cell=time_aware")
    config.model.dropout = 0.3  # each seed's dropout key, data order and init must be its own
    together = {s: tmp_path / f"together-{s}" for s in (3, 5)}
    metrics = train.train_seeds(config, together, stop_at_step=4)
    assert metrics[3]["validation"]["loss"] != metrics[5]["validation"]["loss"]
    final = train.train_seeds(config, together)  # resumes both from step 4
    for seed, workdir in together.items():
        alone = tmp_path / f"alone-{seed}"
        train.train_and_evaluate(train.seed_config(config, seed), alone)
        assert json.loads((workdir / "config.json").read_text())["seed"] == seed
        a = _final_params(workdir, train.seed_config(config, seed))
        b = _final_params(alone, train.seed_config(config, seed))
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6), a, b)
        values = lambda d: [(m["step"], m["split"], m["loss"]) for m in read_metrics(d)]
        for (step_a, split_a, loss_a), (step_b, split_b, loss_b) in zip(values(workdir), values(alone),
                                                                          strict=True):
            assert (step_a, split_a) == (step_b, split_b)
            assert loss_a == pytest.approx(loss_b, rel=1e-5)
    # A seed's workdir is a plain run's workdir: a single run finds it finished.
    again = train.train_and_evaluate(train.seed_config(config, 5), together[5])
    assert again["validation"] == pytest.approx(final[5]["validation"])


def test_seeds_at_different_steps_are_not_resumed_together(tmp_path):
    config = smoke(extra="cell=lstm")
    train.train_and_evaluate(train.seed_config(config, 0), tmp_path / "a", stop_at_step=3)
    with pytest.raises(ValueError, match="different steps"):
        train.train_seeds(config, {0: tmp_path / "a", 1: tmp_path / "b"})


@pytest.mark.slow
def test_a_trained_run_samples_text_after_its_prompt_and_a_missing_run_is_named(tmp_path):
    from ltf.sampling import sample_from_workdir

    train.train_and_evaluate(smoke(extra="cell=lstm"), tmp_path / "run")
    text = sample_from_workdir(tmp_path / "run", prompt="ROMEO:", length=12, temperature=0.8)
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 12
    assert sample_from_workdir(tmp_path / "run", prompt="A", length=5, temperature=0.0) == \
        sample_from_workdir(tmp_path / "run", prompt="A", length=5, temperature=0.0, seed=7)  # greedy
    warmed = sample_from_workdir(tmp_path / "run", prompt="A", length=5, temperature=0.0, warmup="ROMEO:\nO, ")
    assert warmed.startswith("A") and len(warmed) == 6  # the warm-up text is read, not returned
    with pytest.raises(FileNotFoundError, match="no config.json"):
        sample_from_workdir(tmp_path / "nothing", prompt="A", length=1)


def test_test_at_best_evaluates_the_other_splits_with_the_best_validation_checkpoint(tmp_path):
    """train.select_by/select_mode rank the checkpoints; test_at="best" reads test from that one."""
    config = smoke("long_lag.py")
    config.train.update(steps=8, eval_every=2, checkpoint_every=2, keep_checkpoints=1,
                        select_by="loss", select_mode="max", test_at="best")  # the WORST loss: not the last
    train.train_and_evaluate(config, tmp_path)
    logged = read_metrics(tmp_path)
    val = {m["step"]: m["loss"] for m in logged if m["split"] == "validation"}
    worst = max(val, key=val.get)
    test = [m for m in logged if m["split"] == "test"]
    assert len(test) == 1 and test[0]["checkpoint_step"] == worst
    with Checkpointer(tmp_path / "checkpoints", best_metric="val_loss", best_mode="max") as ckpt:
        assert worst in ckpt.all_steps()  # kept beside the last one
    from ltf.evaluation import pick_step

    assert pick_step(tmp_path, "best") == worst


def test_select_by_a_metric_the_task_lacks_fails_naming_the_metrics(tmp_path):
    config = smoke("long_lag.py")
    config.train.select_by = "auroc"
    with pytest.raises(ValueError, match="select_by='auroc'.*its metrics are"):
        train.train_and_evaluate(config, tmp_path)


def test_selection_values_are_validated():
    config = smoke("long_lag.py")
    config.train.test_at = "first"
    with pytest.raises(ValueError, match="train.test_at"):
        validate(config)


def test_cerg_lr_decay_keeps_and_tests_the_checkpoint_with_the_longest_error_free_streams(tmp_path):
    config = smoke("reber.py", "lr_decay")
    selection = (config.train.select_by, config.train.select_mode, config.train.test_at)
    assert selection == ("error_free_length", "max", "best")
    assert config.opt.end_lr_factor == 0.01 and smoke("reber.py").opt.end_lr_factor == 0.1
    train.train_and_evaluate(config, tmp_path)
    logged = read_metrics(tmp_path)
    val = {m["step"]: m["error_free_length"] for m in logged if m["split"] == "validation"}
    (test,) = [m for m in logged if m["split"] == "test"]
    assert val[test["checkpoint_step"]] == max(val.values())


def test_train_script_expands_a_quoted_home_in_the_workdir(tmp_path):
    """`--workdir '~/runs/seed={seed}'`, quoted as `scripts/sweep.py --dry-run` prints it: the run
    goes under $HOME, not into a directory named "~" in the current one."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HOME": str(home)}
    command = [sys.executable, str(repo / "scripts" / "train.py"),
               "--config", f"{repo / 'configs' / 'tlstm_lm.py'}:smoke", "--workdir", "~/runs/seed={seed}",
               "--seeds", "0"]
    subprocess.run(command, cwd=here, env=env, check=True, capture_output=True, timeout=300)
    assert (home / "runs" / "seed=0" / "config.json").exists()
    assert not (here / "~").exists()
