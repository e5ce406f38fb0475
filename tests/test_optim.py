"""ltf/optim.py: the schedules and the optimisers a config names, and gate biases stepped as pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ltf.config_lib import opt_config
from ltf.models import gate_bias_mask
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


def _two_layer_loss(params, b_of):
    """A small nonlinear loss of a stack's gate biases and weights, b read through `b_of`."""
    total = 0.0
    for layer in params["stack"].values():
        total = total + jnp.sum(jnp.tanh(layer["w_x"] * b_of(layer)) ** 2) + jnp.sum(b_of(layer) ** 3)
    return total + jnp.sum(params["out"]["b"] ** 2)


def _sgd_steps(params, tx, grad_fn, steps=5, clip_norm=None):
    state = tx.init(params)
    for _ in range(steps):
        grads = grad_fn(params)
        if clip_norm is not None:
            assert optax.tree.norm(grads) > clip_norm  # the clip is active, so the norms must agree too
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_gate_biases_stepped_as_pairs_move_exactly_as_two_biases_per_gate():
    """Zaremba's LSTM has b = b_x + b_h; ltf keeps one b and steps it as the pair (√2 before and
    after the clip). SGD with an active clip on both parameterisations must agree at every step."""
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    w = [jax.random.normal(k, (5,)) for k in keys[:2]]
    b_x = [jax.random.uniform(k, (5,), minval=-0.5, maxval=0.5) for k in keys[2:4]]
    b_h = [jax.random.uniform(k, (5,), minval=-0.5, maxval=0.5) for k in keys[4:6]]
    one = {"stack": {f"layer_{i}": {"b": b_x[i] + b_h[i], "w_x": w[i]} for i in range(2)},
           "out": {"b": jnp.ones(3)}}
    two = {"stack": {f"layer_{i}": {"b_x": b_x[i], "b_h": b_h[i], "w_x": w[i]} for i in range(2)},
           "out": {"b": jnp.ones(3)}}
    opt = opt_config(name="sgd", lr=0.1, schedule="constant", warmup_steps=0, clip_norm=0.5)
    grad_one = jax.grad(lambda p: _two_layer_loss(p, lambda layer: layer["b"]))
    grad_two = jax.grad(lambda p: _two_layer_loss(p, lambda layer: layer["b_x"] + layer["b_h"]))
    paired = _sgd_steps(one, make_optimizer(opt, 10, pairs=gate_bias_mask)[0], grad_one, clip_norm=0.5)
    literal = _sgd_steps(two, make_optimizer(opt, 10)[0], grad_two, clip_norm=0.5)
    single = _sgd_steps(one, make_optimizer(opt, 10)[0], grad_one)
    for i in range(2):
        got, want = paired["stack"][f"layer_{i}"], literal["stack"][f"layer_{i}"]
        np.testing.assert_allclose(got["b"], want["b_x"] + want["b_h"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["w_x"], want["w_x"], rtol=1e-5, atol=1e-6)
        # one bias stepped plainly is a different training: the pairing is not a no-op
        assert np.abs(single["stack"][f"layer_{i}"]["b"] - got["b"]).max() > 1e-3
    np.testing.assert_allclose(paired["out"]["b"], literal["out"]["b"], rtol=1e-5)


def test_pairs_are_refused_for_adam():
    with pytest.raises(ValueError, match="opt.name='sgd' only"):
        make_optimizer(opt_config(name="adam"), total_steps=10, pairs=gate_bias_mask)
