"""configs/ptb.py: the three sizes of Zaremba et al. (2014) as published, and each one's smoke run."""

import numpy as np
import pytest

from conftest import REPO
from ltf import train
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
    epoch = (929_589 - 1) // (20 * T)  # one pass over ptb.train.txt
    assert c.train.steps == epochs * epoch and c.train.eval_every == epoch
    # lr 1 and the clip on the loss summed over T steps = lr T and clip / T on ltf's mean
    assert (c.opt.name, c.opt.lr, c.opt.clip_norm) == ("sgd", T, pytest.approx(clip / T))
    assert (c.opt.decay_start_step, c.opt.decay_every_steps) == (max_epoch * epoch, epoch)
    assert c.opt.decay_factor == pytest.approx(1 / decay)


def test_an_unknown_size_is_named():
    with pytest.raises(ValueError, match="size='huge': one of small, medium, large"):
        load_config(f"{CONFIG}:size=huge")


@pytest.mark.parametrize("size", ["medium", "large"])
def test_the_larger_sizes_run_their_smoke_setting(size, tmp_path):
    """The smoke choice shrinks the model and the data; the size's dropout and schedule stay."""
    c = load_config(f"{CONFIG}:size={size},smoke")
    assert c.model.dropout == PAPER[size][3]
    metrics = train.train_and_evaluate(c, tmp_path)
    assert np.isfinite(metrics["validation"]["perplexity"])
