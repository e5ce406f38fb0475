"""The cells by name: `CELLS`, `make_cell(name, **options)`. A new cell is registered here."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ltf.cells.base import LSTM
from ltf.cells.classic import Adaptive, LSTMNoForget
from ltf.cells.ctlstm import CTLSTM
from ltf.cells.grud import GRU, GRUD
from ltf.cells.linear import RGLRU, LinearDecay
from ltf.cells.mlstm import MLSTM
from ltf.cells.phased import Phased
from ltf.cells.time_aware import TLSTM, TimeAware


CELLS: dict[str, type[LSTM]] = {
        "lstm": LSTM,
        "lstm_noforget": LSTMNoForget,
        "adaptive": Adaptive,
        "time_aware": TimeAware,
        "tlstm": TLSTM,
        "phased": Phased,
        "ctlstm": CTLSTM,
        "gru": GRU,
        "grud": GRUD,
        "rglru": RGLRU,
        "linear_decay": LinearDecay,
        "mlstm": MLSTM,
}


def make_cell(name: str, **options: Any) -> LSTM:
    """Builds the cell `name` with its options; errors name the allowed names and options."""
    if name not in CELLS:
        raise ValueError(f"cell={name!r}: unknown cell; allowed values are {tuple(CELLS)}.")
    cls = CELLS[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"cell options {unknown} do not apply to cell={name!r}; "
                                          f"its options are {sorted(allowed)}.")
    return cls(**options)


def has_forget_gate(cell: LSTM) -> bool:
    return "f" in cell.gates


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
