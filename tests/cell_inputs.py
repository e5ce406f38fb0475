"""Shared by the cells' tests: parameters moved off their initial values, and NumPy's sigmoid for
the float64 references."""

import jax
import numpy as np


def perturbed_params(cell, key, d_in: int, d_hidden: int, dtype, scale: float = 0.3) -> dict:
    """`cell.init(key, ...)`, then every array moved by scale·N(0, 1) (key folded with its index in
    sorted order), so that the parameters a variant starts at zero (peepholes, W_Δt) take part."""
    params = cell.init(key, d_in, d_hidden)
    return {k: (v + scale * jax.random.normal(jax.random.fold_in(key, i), v.shape)).astype(dtype)
            for i, (k, v) in enumerate(sorted(params.items()))}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))
