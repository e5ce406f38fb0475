"""Data parallelism with `jax.sharding`: the batch split over devices, everything else replicated.

    mesh = make_mesh(config)                      # None: one device, nothing to do
    state = place_state(state, mesh, batch_axis)  # params, optimiser state: replicated; carry: split
    batch = place_batch(batch, mesh, batch_axis)  # each array split along its batch axis

The jitted train step is unchanged: XLA partitions it from the inputs' shardings, and the
gradient of the mean loss over the global batch becomes an all-reduce. `batch_axis` is 0, or 1
when K seeds are stacked in front (`ltf.train.Seeds`).

Across hosts (`config.parallel.distributed=True`), `jax.distributed.initialize()` runs first
(its coordinator address, process count and id come from the environment: SLURM, TPU pods,
or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID), the mesh spans every
process's devices, and every host builds the same global batch (the data iterators are
seeded alike) from which `place_batch` takes the rows of its own devices. Run the same command
on every host; only process 0 should be given a workdir that others do not share.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"
_initialized = False


def make_mesh(config) -> Mesh | None:
    """A 1-D mesh over every device when config.parallel.data_parallel is set, else None."""
    global _initialized
    parallel = config.get("parallel") or {}
    if parallel.get("distributed") and not _initialized:
        jax.distributed.initialize()
        _initialized = True
    if not parallel.get("data_parallel"):
        return None
    devices = jax.devices()
    for field in ("batch_size", "eval_batch_size"):
        size = config.data[field]
        if size % len(devices):
            raise ValueError(f"config.data.{field}={size}: data parallelism over {len(devices)} devices "
                             f"needs a multiple of {len(devices)}.")
    return Mesh(np.asarray(devices), (DATA,))


def _spec(ndim: int, batch_axis: int) -> PartitionSpec:
    return PartitionSpec(*([None] * batch_axis + [DATA] + [None] * (ndim - batch_axis - 1)))


def _put(value, mesh: Mesh, batch_axis: int | None):
    """A host array -> a global array, split along `batch_axis` (replicated when None); each
    process supplies its own devices' pieces from its copy of the whole array."""
    value = np.asarray(value)
    spec = PartitionSpec() if batch_axis is None else _spec(value.ndim, batch_axis)
    return jax.make_array_from_callback(value.shape, NamedSharding(mesh, spec), lambda index: value[index])


def place_batch(batch: dict, mesh: Mesh | None, batch_axis: int) -> dict:
    """Host arrays -> global arrays split along `batch_axis`."""
    if mesh is None:
        return batch
    return {key: _put(value, mesh, batch_axis) for key, value in batch.items()}


def place_state(state: Any, mesh: Mesh | None, batch_axis: int) -> Any:
    """The train state on the mesh: the carried recurrent state split along the batch axis,
    every other leaf replicated."""
    if mesh is None:
        return state
    rest = jax.tree.map(lambda x: _put(x, mesh, None), state._replace(carry=None))
    return rest._replace(carry=place_carry(state.carry, mesh, batch_axis))


def place_carry(carry: Any, mesh: Mesh | None, batch_axis: int) -> Any:
    """A carried recurrent state on the mesh, split along the batch axis."""
    if mesh is None:
        return carry
    return jax.tree.map(lambda x: _put(x, mesh, batch_axis), carry)
