"""Checkpointer: roundtrip into NamedTuples, last N + best, mismatch and damage handling."""

import math
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ltf.checkpoint import (Checkpointer, CheckpointCorruptError, CheckpointFallbackWarning,
                            CheckpointMismatchError, tree_fingerprint)


@flax.struct.dataclass
class TrainState:  # the shape of ltf.train's state: a struct dataclass with an optax state inside
    step: jax.Array
    params: dict
    opt_state: optax.OptState
    rng: jax.Array


TX = optax.chain(optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3))


@jax.jit
def _stepped_opt_state(params):  # one compilation per shape; eager optax ops would compile dozens
    opt_state = TX.init(params)
    _, opt_state = TX.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
    return opt_state  # non-trivial moments and counts


def make_state(hidden=8, d_in=4, seed=0, step=7):
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    params = {"lstm_0": {"w_h": normal(hidden, 4 * hidden), "w_x": normal(d_in, 4 * hidden),
                         "b": jnp.zeros((4 * hidden,))},
              "head": {"w": normal(hidden, 3)}}
    return TrainState(step=jnp.asarray(step, jnp.int32), params=params, opt_state=_stepped_opt_state(params),
                      rng=jnp.asarray([0, seed], jnp.uint32))


def save_steps(ckpt, steps, **kw):
    for s in steps:
        assert ckpt.save(s, make_state(seed=s, step=s), data_state={"position": s}, **kw)
    ckpt.wait_until_finished()


def step_dirs(directory):
    return sorted(p.name for p in Path(directory).iterdir() if not p.name.startswith("_"))


def test_roundtrip_restores_types_values_data_and_meta(tmp_path):
    state = make_state(seed=1)
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(5, state, data_state={"position": 123, "epoch": 2, "order": [3, 1, 2]},
                         metrics={"val_loss": 1.5, "acc": np.float32(0.25)}, meta={"config_hash": "abc"})
    with Checkpointer(tmp_path / "ckpt") as ckpt:  # a new process would open it afresh
        assert ckpt.latest_step() == 5
        template = make_state(seed=2, step=0)  # other values, same structure
        restored, data_state, meta = ckpt.restore(template)
    assert jax.tree.structure(restored) == jax.tree.structure(template)
    assert isinstance(restored, TrainState)
    inject_state = restored.opt_state[1]
    assert type(inject_state) is type(template.opt_state[1])
    assert isinstance(inject_state.inner_state[0], optax.ScaleByAdamState)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert data_state == {"position": 123, "epoch": 2, "order": [3, 1, 2]}
    assert meta["step"] == 5 and meta["config_hash"] == "abc"
    assert meta["metrics"] == {"val_loss": 1.5, "acc": 0.25}
    assert meta["state_fingerprint"] == tree_fingerprint(state) == tree_fingerprint(template)


def test_restore_into_abstract_template_and_typed_key(tmp_path):
    state = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}, "key": jax.random.key(0)}
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, data_state={})
        restored, data_state, _ = ckpt.restore(jax.eval_shape(lambda: state))
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    assert data_state == {}


@pytest.mark.parametrize("mode, values, best", [
    ("min", [5.0, 1.0, 3.0, 4.0, None, math.nan, 7.0, 8.0], 2),
    ("max", [5.0, 9.0, 3.0, 4.0, None, math.inf, 7.0, 8.0], 2),  # non-finite never ranks as best
])
def test_keeps_last_n_and_the_best(tmp_path, mode, values, best):
    with Checkpointer(tmp_path, max_to_keep=2, best_mode=mode) as ckpt:
        for step, value in enumerate(values, start=1):
            ckpt.save(step, make_state(seed=step), data_state={"position": step},
                      metrics=None if value is None else {"val_loss": value})
        assert ckpt.all_steps() == [best, 7, 8]
        assert step_dirs(tmp_path) == [str(best), "7", "8"]
        assert ckpt.best_step() == best
    with Checkpointer(tmp_path, max_to_keep=2, best_mode=mode) as ckpt:  # the best survives reopening
        assert ckpt.best_step() == best
        better = -1.0 if mode == "min" else 100.0
        ckpt.save(9, make_state(seed=9), data_state={"position": 9}, metrics={"val_loss": better})
        assert ckpt.all_steps() == [8, 9] and ckpt.best_step() == 9


def test_keep_best_false_keeps_only_the_last_n(tmp_path):
    with Checkpointer(tmp_path, max_to_keep=2, keep_best=False) as ckpt:
        for step, value in enumerate([1.0, 5.0, 6.0, 7.0], start=1):
            ckpt.save(step, make_state(seed=step), data_state={}, metrics={"val_loss": value})
        assert ckpt.all_steps() == [3, 4]
        assert ckpt.best_step() == 3  # the best of what is kept


def test_best_step_is_none_without_the_metric(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2], metrics={"train_loss": 1.0})
        assert ckpt.best_step() is None


def test_save_interval_force_and_existing_steps(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=5) as ckpt:
        state = make_state()
        assert ckpt.save(3, state, data_state={})  # the first save into an empty directory always goes
        assert not ckpt.save(4, state, data_state={})
        assert ckpt.save(5, state, data_state={})
        assert not ckpt.save(5, state, data_state={}, force=True)  # already on disk: left as it is
        assert not ckpt.save(7, state, data_state={})
        assert ckpt.save(7, state, data_state={}, force=True)
        assert ckpt.all_steps() == [3, 5, 7]


def test_data_state_must_be_json(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(TypeError, match="data_state must be a JSON-able dict"):
            ckpt.save(1, make_state(), data_state={"iterator": b"\x00bytes"})
        assert ckpt.all_steps() == []


def test_mismatched_template_names_the_path_and_both_shapes(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2])
        with pytest.raises(CheckpointMismatchError) as info:
            ckpt.restore(make_state(hidden=16))
        message = str(info.value)
        assert message.startswith(f"checkpoint at {tmp_path / '2'} has params/head/w of shape (8, 3), "
                                  "the model built from the config expects (16, 3)")
        assert "params/lstm_0/w_h (8, 32) vs (16, 64)" in message
        assert "use a new --workdir or restore the old config" in message
        extra = make_state()
        extra = extra.replace(params={**extra.params, "extra": {"w": jnp.zeros(3)}})
        with pytest.raises(CheckpointMismatchError, match="has no params/extra/w"):
            ckpt.restore(extra)
        assert ckpt.all_steps() == [1, 2] and step_dirs(tmp_path) == ["1", "2"]  # no fallback, nothing moved


def _largest_file(directory: Path) -> Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated array data": lambda step_dir: _truncate(_largest_file(step_dir / "state")),
    "missing state metadata": lambda step_dir: (step_dir / "state" / "_METADATA").unlink(),
    "truncated data position": lambda step_dir: _truncate(step_dir / "data" / "metadata"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_latest_falls_back_to_previous_step(tmp_path, damage):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2, 3])
    DAMAGE[damage](tmp_path / "3")
    files_before = sorted(p.relative_to(tmp_path / "3") for p in (tmp_path / "3").rglob("*"))
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 3
        with pytest.warns(CheckpointFallbackWarning, match=rf"checkpoint at {tmp_path / '3'} cannot be read"):
            restored, data_state, meta = ckpt.restore(make_state(seed=0))
        assert data_state == {"position": 2} and meta["step"] == 2
        np.testing.assert_array_equal(restored.params["head"]["w"], make_state(seed=2).params["head"]["w"])
        assert ckpt.latest_step() == 2
        assert step_dirs(tmp_path) == ["1", "2", "3.unreadable"]  # renamed, nothing deleted
        assert sorted(p.relative_to(tmp_path / "3.unreadable")
                      for p in (tmp_path / "3.unreadable").rglob("*")) == files_before
        assert ckpt.save(3, make_state(seed=3), data_state={"position": 3})  # the resumed run saves step 3 again
        assert ckpt.restore(make_state())[1] == {"position": 3}


def test_damaged_explicit_step_raises_and_moves_nothing(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2])
    DAMAGE["truncated array data"](tmp_path / "2")
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointCorruptError, match=rf"checkpoint at {tmp_path / '2'} cannot be read.*"
                                                         r"Restore another step \(on disk: \[1, 2\]\)"):
            ckpt.restore(make_state(), step=2)
        assert ckpt.restore(make_state(), step=1)[1] == {"position": 1}
        assert step_dirs(tmp_path) == ["1", "2"]


def test_all_damaged_raises_and_moves_nothing(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2])
    for step in ("1", "2"):
        DAMAGE["missing state metadata"](tmp_path / step)
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(CheckpointCorruptError, match="no checkpoint in .* can be read"):
            ckpt.restore(make_state())
        assert step_dirs(tmp_path) == ["1", "2"]


def test_unreadable_metrics_file_is_moved_aside_on_opening(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        save_steps(ckpt, [1, 2], metrics={"val_loss": 1.0})
    _truncate(tmp_path / "2" / "metrics" / "metrics")
    with pytest.warns(CheckpointFallbackWarning, match="unreadable metrics"):
        ckpt = Checkpointer(tmp_path)
    assert ckpt.latest_step() == 1 and step_dirs(tmp_path) == ["1", "2.unreadable"]
    ckpt.close()


def test_restore_without_checkpoints_says_where_it_looked(tmp_path):
    with Checkpointer(tmp_path / "none") as ckpt:
        with pytest.raises(FileNotFoundError, match="no checkpoint in .*none"):
            ckpt.restore(make_state())
        assert ckpt.all_steps() == [] and ckpt.best_step() is None


def test_async_save_roundtrip(tmp_path):
    state = make_state(seed=4)
    with Checkpointer(tmp_path, async_save=True) as ckpt:
        assert ckpt.save(1, state, data_state={"position": 1})
        ckpt.save(2, make_state(seed=5), data_state={"position": 2})
        ckpt.wait_until_finished()
        restored, data_state, _ = ckpt.restore(make_state(), step=1)
    np.testing.assert_array_equal(restored.params["lstm_0"]["w_h"], state.params["lstm_0"]["w_h"])
    assert data_state == {"position": 1} and step_dirs(tmp_path) == ["1", "2"]
