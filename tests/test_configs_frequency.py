"""configs/frequency.py: the paper's budget as a choice, through train.py and the sweep alike."""

from pathlib import Path

import jax
import numpy as np

from ltf import sweep
from ltf.config_lib import load_config
from ltf.tasks.registry import make_task

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "frequency.py"


def test_paper_is_seventy_epochs_of_five_thousand_sequences():
    config = load_config(f"{CONFIG}:sampling=async,cell=phased,paper")
    assert config.train.steps * config.data.batch_size >= 70 * 5000 > (config.train.steps - 1) * 32
    assert config.data.batch_size == 32 and config.model.d_hidden == 110
    assert load_config(f"{CONFIG}:sampling=async").train.steps == 3000
    runs = sweep.load_sweep(f"{CONFIG}:sampling=async,paper,arms=lstm+phased,seeds=2").runs
    assert {r.steps for r in runs} == {10938} and all(r.config_arg == "sampling=async,paper" for r in runs)


def test_inputs_choice_reaches_the_task_and_the_sweep():
    config = load_config(f"{CONFIG}:sampling=async,cell=phased,inputs=value,smoke")
    assert config.task.inputs == "value" and load_config(f"{CONFIG}:smoke").task.inputs == "value_dt"
    task = make_task(config)
    batch = next(task.train_batches(0))
    assert batch["inputs"].shape[-1] == 1
    params = task.model.init(jax.random.PRNGKey(0))
    loss, _ = task.loss(params, task.model.initial_state(batch["inputs"].shape[0]), batch, None)
    assert np.isfinite(float(loss))
    runs = sweep.load_sweep(f"{CONFIG}:sampling=async,paper,inputs=value,arms=phased,seeds=1").runs
    assert [r.config_arg for r in runs] == ["sampling=async,paper,inputs=value"]
    # the paper's LSTM as an arm: its inputs are the arm's, beside the (value, Δt) arms
    lstm, lstm_value_time = sweep.load_sweep(f"{CONFIG}:sampling=async,arms=lstm+lstm_value_time,seeds=1").runs
    assert lstm_value_time.load_config().task.inputs == "value_time" and lstm.load_config().task.inputs == "value_dt"
