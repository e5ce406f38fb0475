"""configs/tlstm_lm.py: the `h512` size (the small Transformer's level on tiny_shakespeare)."""

from pathlib import Path

import pytest

from ltf.config_lib import load_config

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "tlstm_lm.py")


def test_h512_sets_the_measured_size_and_leaves_the_rest():
    base, big = load_config(CONFIG), load_config(f"{CONFIG}:h512")
    assert (big.model.d_hidden, big.model.d_embed, big.model.dropout, big.train.steps) == (512, 128, 0.25, 2000)
    assert big.model.locked_dropout and big.opt.lr == base.opt.lr == 2e-3
    assert (big.data.batch_size, big.data.seq_len) == (base.data.batch_size, base.data.seq_len) == (32, 128)


def test_h512_with_smoke_is_still_a_smoke_run():
    c = load_config(f"{CONFIG}:h512,smoke")
    assert (c.model.d_hidden, c.train.steps) == (16, 6)


def test_the_sweep_passes_h512_to_every_run():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("tlstm_lm", CONFIG)
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    runs = module.get_sweep("h512,corpus=tiny_shakespeare,arms=lstm+tlstm,seeds=2")
    assert len(runs) == 4
    for run in runs:
        config_arg = next(v for k, v in run.items() if isinstance(v, str) and "h512" in v)
        assert load_config(f"{CONFIG}:{config_arg}").model.d_hidden == 512


def _module():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("tlstm_lm", CONFIG)
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # 33 model shapes traced: ~8 s
def test_the_modern_arms_match_the_lstm_stack_in_parameters():
    """Issue 18's arms at equal parameters: each recurrent stack within 1% of lstm's (h512 size)."""
    import ml_collections

    from ltf.config_lib import MODERN_ARMS, stack_params

    runs = _module().get_sweep("h512,arms=lstm+" + "+".join(MODERN_ARMS) + ",seeds=1")
    cells = ["lstm", "rglru", "linear_decay", "mlstm", "mlstm", "rglru", "lstm", "mlstm"]
    assert [r["model.cell"] for r in runs] == cells
    counts = []
    for run in runs:
        config = ml_collections.ConfigDict(load_config(f"{CONFIG}:h512").to_dict())
        config.update_from_flattened_dict({k: v for k, v in run.items() if k.startswith("model.")})
        counts.append(stack_params(config.model, config.model.d_embed))
    assert all(abs(c - counts[0]) <= 0.01 * counts[0] for c in counts), counts
    assert all(r["model.d_hidden"] % 4 == 0 for r in runs if r["model.cell"] == "mlstm")
    assert all(r["model.d_hidden"] != 512 for r in runs[1:])  # each modern arm at a width of its own


def test_the_default_sweep_is_the_six_classic_arms():
    runs = _module().get_sweep("seeds=1")
    assert [r["model.cell"] for r in runs] == ["lstm", "lstm_noforget", "adaptive", "time_aware", "time_aware", "tlstm"]
