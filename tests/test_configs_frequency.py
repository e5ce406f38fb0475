"""configs/frequency.py: the paper's budget as a choice, through train.py and the sweep alike."""

from pathlib import Path

from ltf import sweep
from ltf.config_lib import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "frequency.py"


def test_paper_is_seventy_epochs_of_five_thousand_sequences():
    config = load_config(f"{CONFIG}:sampling=async,cell=phased,paper")
    assert config.train.steps * config.data.batch_size >= 70 * 5000 > (config.train.steps - 1) * 32
    assert config.data.batch_size == 32 and config.model.d_hidden == 110
    assert load_config(f"{CONFIG}:sampling=async").train.steps == 3000
    runs = sweep.load_sweep(f"{CONFIG}:sampling=async,paper,arms=lstm+phased,seeds=2").runs
    assert {r.steps for r in runs} == {10938} and all(r.config_arg == "sampling=async,paper" for r in runs)
