"""configs/tlstm_lm.py: the `h512` size (the small Transformer's level on tiny_shakespeare)."""

from pathlib import Path

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
