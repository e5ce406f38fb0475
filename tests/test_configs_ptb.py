"""configs/ptb.py: the three sizes of Zaremba et al. (2014) as published, and each one's smoke run."""

import jax
import numpy as np
import pytest

from conftest import REPO
from ltf import runs, train
from ltf.config_lib import load_config

CONFIG = str(REPO / "configs" / "ptb.py")
# size -> units, T, init scale, dropout, epochs, lr decay, epochs before decaying, gradient clip
PAPER = {"small": (200, 20, 0.1, 0.0, 13, 2.0, 4, 5.0), "medium": (650, 35, 0.05, 0.5, 39, 1.2, 6, 5.0),
         "large": (1500, 35, 0.04, 0.65, 55, 1.15, 14, 10.0)}


@pytest.mark.parametrize("size", PAPER)
def test_each_size_is_the_papers(size):
    units, T, scale, dropout, epochs, decay, max_epoch, clip = PAPER[size]
    c = load_config(f"{CONFIG}:size={size}")
    assert (c.model.d_hidden, c.model.d_embed, c.model.n_layers, c.data.seq_len, c.data.batch_size) == (
        units, units, 2, T, 20)
    assert (c.model.init_uniform, c.model.dropout, c.model.locked_dropout) == (scale, dropout, False)
    assert c.model.two_gate_biases  # as the paper's Lua code builds each gate: b_x + b_h
    epoch = (929_589 - 1) // (20 * T)  # one pass over ptb.train.txt
    assert c.train.steps == epochs * epoch and c.train.eval_every == epoch
    # lr 1 and the clip on the loss summed over T steps = lr T and clip / T on ltf's mean
    assert (c.opt.name, c.opt.lr, c.opt.clip_norm) == ("sgd", T, pytest.approx(clip / T))
    assert (c.opt.decay_start_step, c.opt.decay_every_steps) == (max_epoch * epoch, epoch)
    assert c.opt.decay_factor == pytest.approx(1 / decay)


def test_an_unknown_size_is_named():
    with pytest.raises(ValueError, match="size='huge': one of small, medium, large"):
        load_config(f"{CONFIG}:size=huge")


@pytest.mark.slow
@pytest.mark.parametrize("size", ["medium", "large"])
def test_the_larger_sizes_run_their_smoke_setting(size, tmp_path):
    """The smoke choice shrinks the model and the data; the size's dropout and schedule stay."""
    c = load_config(f"{CONFIG}:size={size},smoke")
    assert c.model.dropout == PAPER[size][3]
    metrics = train.train_and_evaluate(c, tmp_path)
    assert np.isfinite(metrics["validation"]["perplexity"])


def test_two_gate_biases_start_as_a_sum_of_two_draws_and_a_run_restores(tmp_path):
    """The Lua code's b_x + b_h: the layers' gate biases gain a second U[-s, s] draw (everything
    else as with one bias), the run trains, and its checkpoint restores with the paired optimiser."""
    paired = load_config(f"{CONFIG}:smoke")  # two biases per gate: the config's default
    c = paired.copy_and_resolve_references()
    c.model.two_gate_biases = False
    (task_one, _, _), (task_two, _, _) = train.build(c), train.build(paired)
    p_one, p_two = task_one.model.init(jax.random.PRNGKey(0)), task_two.model.init(jax.random.PRNGKey(0))
    s = c.model.init_uniform
    for name in p_one["stack"]:
        second = np.asarray(p_two["stack"][name]["b"] - p_one["stack"][name]["b"])
        assert np.abs(second).max() <= s and second.std() > s / 3  # U[-s, s] has std s/√3
        np.testing.assert_array_equal(p_two["stack"][name]["w_h"], p_one["stack"][name]["w_h"])
    np.testing.assert_array_equal(p_two["embed"], p_one["embed"])
    metrics = train.train_and_evaluate(paired, tmp_path)
    assert np.isfinite(metrics["validation"]["perplexity"])
    run = runs.load_run(tmp_path)
    assert set(run.params["stack"]) == set(p_two["stack"])


def test_two_gate_biases_need_sgd():
    c = load_config(f"{CONFIG}:smoke")
    c.opt.name = "adam"
    with pytest.raises(ValueError, match="model.two_gate_biases"):
        train.build(c)
