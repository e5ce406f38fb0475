"""The synthetic tasks as training tasks: losses and metrics against hand computations, errors."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltf import train
from ltf.tasks import synthetic
from ltf.config_lib import load_config
from ltf.tasks.registry import make_task
from ltf.data.synthetic import reber

REPO = Path(__file__).resolve().parents[1]


def config(spec):
    return load_config(str(REPO / "configs" / spec))


def test_multilabel_loss_and_the_papers_correctness_rule_by_hand():
    task = make_task(config("reber.py:smoke"))
    targets = np.zeros((1, 2, 7), np.float32)
    targets[0, 0, [1, 2]] = 1.0  # step 0: T or P may follow
    targets[0, 1, 0] = 1.0
    logit = np.log(0.52 / 0.48)  # sigmoid = 0.52: |0.52 - 1| = 0.48 < 0.49 and |0.52 - 0| = 0.52 > 0.49
    outputs = np.full((1, 2, 7), -10.0, np.float32)
    outputs[0, 0, [1, 2]] = logit  # every output within 0.49: correct
    outputs[0, 1, 0] = 10.0
    outputs[0, 1, 3] = logit  # one output 0.52 away from its 0 target: wrong
    batch = {"targets": jnp.asarray(targets), "mask": jnp.ones((1, 2))}
    sums, correct = task._sums(jnp.asarray(outputs), batch)
    p = jax.nn.sigmoid(outputs)
    bce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum()
    assert float(sums["loss_sum"]) == pytest.approx(bce, rel=1e-5)
    np.testing.assert_array_equal(np.asarray(correct), [[1.0, 0.0]])
    assert float(sums["correct"]) == 1.0 and float(sums["count"]) == 2.0


def test_error_free_length_runs_across_windows_in_order():
    task = make_task(config("reber.py:smoke"))
    window = lambda correct: {"loss_sum": 0.0, "count": float(np.size(correct)), "correct": float(np.sum(correct)),
                              "correct_BxT": np.asarray(correct, np.float32),
                              "mask_BxT": np.ones(np.shape(correct), np.float32)}
    # stream 0: error at symbol 5 (the second window); stream 1: never wrong
    out = task.eval_scalars([window([[1, 1, 1, 1], [1, 1, 1, 1]]), window([[1, 0, 1, 1], [1, 1, 1, 1]])])
    assert out["error_free_length"] == (5 + 8) / 2 and out["perfect"] == 0.5
    assert out["step_accuracy"] == 15 / 16


def test_regression_and_classes_metrics_by_hand():
    adding = make_task(config("long_lag.py:smoke"))
    sums, _ = adding._sums(jnp.array([[0.5], [0.9]]), {"targets": jnp.array([[0.52], [0.5]])})
    assert float(sums["loss_sum"]) == pytest.approx(0.02**2 + 0.4**2, rel=1e-5)
    assert adding.scalars({k: float(v) for k, v in sums.items()})["accuracy"] == 0.5  # |0.02| < 0.04 only
    order = make_task(config("long_lag.py:task=temporal_order,smoke"))
    logits = jnp.array([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    sums, _ = order._sums(logits, {"targets": jnp.array([0, 1])})
    expected = -jax.nn.log_softmax(logits)[jnp.arange(2), jnp.array([0, 1])].sum()
    assert float(sums["loss_sum"]) == pytest.approx(float(expected)) and float(sums["correct"]) == 1.0


def test_every_run_is_scored_on_the_same_evaluation_data_whatever_its_seed():
    task = make_task(config("frequency.py:smoke"))
    a, b = list(task.eval_batches("validation")), list(task.eval_batches("validation"))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a[0]["inputs"], next(iter(task.eval_batches("test")))["inputs"])
    assert not np.array_equal(next(task.train_batches(0))["inputs"], next(task.train_batches(1))["inputs"])


def test_a_head_the_task_cannot_score_is_named():
    c = config("reber.py:smoke")
    c.model.head = "last"
    with pytest.raises(ValueError, match="config.model.head.*per_step"):
        make_task(c)


def test_an_unknown_task_is_named():
    c = config("long_lag.py:smoke")
    c.task.name = "copy"
    with pytest.raises(ValueError, match="config.task.name.*'copy'.*adding"):
        train.build(c)


def test_cerg_rows_carry_their_state_through_a_stream_and_streams_restart_as_configured():
    c = config("reber.py:smoke")
    c.task.restart_every = 3
    task = make_task(c)
    batches = task.train_batches(0)
    resets = [bool(next(batches)["reset"].all()) for _ in range(7)]
    assert resets == [True, False, False, True, False, False, True]
    first = [next(task.train_batches(0))["inputs"] for _ in range(2)]
    resumed = task.train_batches(0)
    for _ in range(4):
        next(resumed)
    state = resumed.get_state()
    again = task.train_batches(0)
    again.set_state(state)
    np.testing.assert_array_equal(next(resumed)["inputs"], next(again)["inputs"])  # resumes exactly
    np.testing.assert_array_equal(first[0], first[1])
    assert isinstance(task, synthetic.CERG) and task.model.d_out == len(reber.SYMBOLS)


@pytest.mark.slow
def test_the_external_reset_arm_resets_at_every_string_start_inside_windows(tmp_path):
    c = config("reber.py:smoke,cell=lstm_noforget")
    c.task.name = "erg"
    task = make_task(c)
    batch = next(task.train_batches(0))
    starts = batch["reset_T"]
    assert starts[:, 1:].any()  # strings start inside windows, not only at their first step
    np.testing.assert_array_equal(np.argmax(batch["inputs"], -1)[starts], reber.SYMBOLS.index("B"))
    # the model's state at a string start does not depend on anything before it
    params = task.model.init(jax.random.key(0))
    row, t = map(int, np.argwhere(starts[:, 1:])[0])
    t += 1
    grad = jax.grad(lambda x: task.model.apply(params, x, batch["dt"], batch["mask"], resets_BxT=starts)[0]
                    [row, t:].sum())(jnp.asarray(batch["inputs"]))
    np.testing.assert_array_equal(np.asarray(grad)[row, :t], 0.0)
    assert np.isfinite(train.train_and_evaluate(c, tmp_path)["validation"]["step_accuracy"])
