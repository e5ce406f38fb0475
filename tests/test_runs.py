"""ltf.runs.load_run and scripts/cerg_states.py: a trained run read back reproduces its own
logged test metrics; the memory units found are the ones that hold the embedded symbol."""

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from ltf import train
from ltf.config_lib import load_config
from ltf.runs import load_run
from ltf.data.synthetic import reber

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cerg_states", REPO / "scripts" / "cerg_states.py")
cerg_states = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cerg_states)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cerg")
    config = load_config(str(REPO / "configs" / "reber.py:smoke"))
    return workdir, train.train_and_evaluate(config, workdir)


def test_a_loaded_run_reproduces_its_logged_test_metrics(trained):
    workdir, final = trained
    run = load_run(workdir)
    assert run.step == run.config.train.steps and run.config.task.name == "cerg"
    eval_step = jax.jit(train.make_eval_step(run.task))
    carry = run.task.model.initial_state(run.config.data.eval_batch_size)
    outputs = train.evaluate(eval_step, run.params, carry, run.task.eval_batches("test"))
    metrics = run.task.eval_scalars(outputs)
    for name in ("loss", "step_accuracy", "error_free_length"):
        assert metrics[name] == pytest.approx(final["test"][name], rel=1e-5), name


def test_load_run_names_what_is_missing(trained, tmp_path):
    workdir, _ = trained
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 4; there are \[3, 6\]"):
        load_run(workdir, step=4)
    assert load_run(workdir, step=3).step == 3


def test_memory_units_are_the_ones_that_follow_the_embedded_symbol():
    stream = cerg_states.test_stream(400)
    ids_T, starts_T = np.argmax(stream["inputs"][0], -1), stream["reset_T"][0]
    string_start = np.maximum.accumulate(np.where(starts_T, np.arange(400), 0))
    branch = np.where(ids_T[np.minimum(string_start + 1, 399)] == reber.SYMBOLS.index("T"), 1.0, -1.0)
    rng = np.random.default_rng(0)
    c_TxH = rng.normal(size=(400, 6))
    c_TxH[:, 4] += 3 * branch  # holds the branch strongly
    c_TxH[:, 1] -= 1 * branch  # weakly, with the opposite sign
    np.testing.assert_array_equal(cerg_states.memory_units(c_TxH, ids_T, starts_T, 2), [4, 1])


def test_the_states_figure_is_drawn_from_runs(trained, tmp_path, capsys):
    workdir, _ = trained
    stream = cerg_states.test_stream(50)
    run = cerg_states.run_stream(str(workdir), stream)
    assert run["c"].shape == (50, 8) and run["f"].shape == (50, 8) and len(run["memory_units"]) == 2
    out = tmp_path / "states.png"
    cerg_states.plot([run], stream["reset_T"][0], 20, out)
    assert out.read_bytes()[:4] == b"\x89PNG"
