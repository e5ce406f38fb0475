"""ltf/optim.py: the schedules and the optimisers a config names."""

import jax.numpy as jnp
import numpy as np
import pytest

from ltf.config_lib import opt_config
from ltf.optim import make_optimizer


def test_adamw_decays_the_weights_that_adam_leaves_alone():
    params, zero = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
    for name, decay in (("adamw", 0.1), ("adam", 0.0)):
        opt = opt_config(name=name, lr=0.5, schedule="constant", warmup_steps=0, weight_decay=decay, clip_norm=0.0)
        tx, _ = make_optimizer(opt, total_steps=10)
        updates, _ = tx.update(zero, tx.init(params), params)
        np.testing.assert_allclose(updates["w"], -0.5 * decay * np.ones(3), atol=1e-7)  # -lr·wd·w


def test_cosine_warms_up_then_decays_and_step_halves_after_its_start():
    cosine = make_optimizer(opt_config(lr=1.0, warmup_steps=10, end_lr_factor=0.1), total_steps=110)[1]
    assert float(cosine(0)) == 0.0 and float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(110)) == pytest.approx(0.1)
    step = make_optimizer(opt_config(name="sgd", lr=1.0, schedule="step", warmup_steps=0, decay_start_step=4,
                                     decay_every_steps=2, decay_factor=0.5), total_steps=10)[1]
    assert [float(step(t)) for t in (0, 4, 5, 6, 8)] == [1.0, 1.0, 1.0, 0.5, 0.25]
