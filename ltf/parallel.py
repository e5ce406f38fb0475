"""Data parallelism with `jax.sharding`: the batch split over devices, everything else replicated.

    mesh = make_mesh(config)                      # None: one device, nothing to do
    state = place_state(state, mesh, batch_axis)  # params, optimiser state: replicated; carry: split
    batch = place_batch(batch, mesh, batch_axis)  # each array split along its batch axis

The jitted train step is unchanged: XLA partitions it from the inputs' shardings, and the
gradient of the mean loss over the global batch becomes an all-reduce. `batch_axis` is 0, or 1
when K seeds are stacked in front (`ltf.train.Seeds`).

Across hosts (`config.parallel.distributed=True`), `jax.distributed.initialize` runs first
(`host_settings`: the coordinator address, process count and id from `config.parallel`, else
from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, else JAX's own detection of
SLURM, Open MPI or a TPU pod; CPU collectives across processes through gloo), the mesh spans every
process's devices, and every host builds the same global batch (the data iterators are
seeded alike) from which `place_batch` takes the rows of its own devices; `to_host` gathers
outputs split over the batch (per-row evaluation outputs) from every host. Each host reads its
own copy of the data, so `check_same_data` compares them at the start. The data position in a
checkpoint is that of the global batch sequence, the same on every host and for any number of
hosts: a run resumes on another number of them. Run the same command, with the same workdir on
a shared filesystem, on every host: orbax writes each checkpoint once for all of them, and
process 0 alone writes the metrics and the workdir's description and shows the progress bar.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
from pathlib import Path
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
        start_hosts(parallel)
        _initialized = True
        check_hosts_agree(config)
    if not parallel.get("data_parallel"):
        return None
    devices = jax.devices()
    for field in ("batch_size", "eval_batch_size"):
        size = config.data[field]
        if size % len(devices):
            raise ValueError(f"config.data.{field}={size}: data parallelism over {len(devices)} devices "
                             f"needs a multiple of {len(devices)}.")
    return Mesh(np.asarray(devices), (DATA,))


def start_hosts(parallel) -> None:
    """jax.distributed.initialize, waiting `timeout_s` for every host; a host that dies later is
    noticed by the others within `heartbeat_s`, which then stop with JAX's error."""
    address, count, index = host_settings(parallel)
    timeout_s, heartbeat_s = int(parallel.get("timeout_s", 300)), int(parallel.get("heartbeat_s", 100))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # the CPU's collectives across processes
    # JAX's coordination client ends the process itself (DEADLINE_EXCEEDED) when the others do
    # not come in time: this line says beforehand what it waits for
    print(f"hosts: process {index} of {count} joining the run at {address}, waiting up to "
          f"config.parallel.timeout_s={timeout_s} s for every host to start the same command"
          if address else "hosts: joining the run found by JAX's cluster detection", flush=True)
    if address and index == 0:
        check_port_free(address)
    try:
        jax.distributed.initialize(address, count, index, initialization_timeout=timeout_s,
                                   heartbeat_timeout_seconds=heartbeat_s)
    except Exception as e:  # JAX raises XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE, ...)
        where = "JAX's cluster detection" if address is None else f"coordinator {address}, {count} processes"
        raise RuntimeError(
                f"hosts: process {index} could not join the run ({where}, config.parallel.timeout_s="
                f"{timeout_s} s): start the same command on every host, each with its own process_id in "
                f"0..{count - 1 if count else 'N-1'}, and check that host 0 can be reached at that address. "
                f"JAX said: {str(e).splitlines()[0][:300]}") from e
    print(f"hosts: process {jax.process_index()} of {jax.process_count()} joined: "
          f"{jax.local_device_count()} local devices, {jax.device_count()} in all", flush=True)


def check_port_free(address: str) -> None:
    """Process 0 serves the coordinator at `address`'s port on every interface. A port that is
    taken (a coordinator left from an earlier run, another program) made JAX's gRPC server crash
    with a segmentation fault: say so first. Bound as gRPC binds it (SO_REUSEADDR), so that a
    port left in TIME_WAIT by a finished run passes."""
    port = int(address.rsplit(":", 1)[1])
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    continue
                raise RuntimeError(
                        f"hosts: config.parallel.coordinator_address={address}: port {port} is in use on this "
                        "host (process 0 serves the coordinator there): a coordinator left from an earlier run "
                        "or another program holds it. End that process (e.g. `ss -ltnp | grep "
                        f":{port}`) or choose another port, the same on every host.") from e


def check_hosts_agree(config) -> None:
    """Every host must train the same config (but its own process_id): names the hosts whose
    resolved config differs from process 0's, and the fields that differ."""
    config_dict = json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config, default=str))
    config_dict.get("parallel", {}).pop("process_id", None)
    fields = _flatten(config_dict)
    differ = hosts_that_differ(json.dumps(sorted(fields)))  # the same fields first, then their values
    names = "the set of fields differs"
    if not differ:
        by_field = _differing_values(fields)
        differ = sorted(set(sum(by_field.values(), [])))
        names = ", ".join(f"config.{name}" for name in by_field)
    if differ:
        raise ValueError(f"hosts: the config of process(es) {differ} differs from process 0's ({names}): run the "
                         "same command, with the same config file and overrides, on every host (only "
                         "config.parallel.process_id may differ).")


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{"data.batch_size": "32", ...}: every leaf of a nested dict by its dotted path, as JSON."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return out


def _differing_values(fields: dict[str, str]) -> dict[str, list[int]]:
    """{field: processes whose value differs from process 0's}, for fields every host has: one
    gather of a digest per field."""
    from jax.experimental import multihost_utils

    names = sorted(fields)
    digests = np.stack([np.frombuffer(hashlib.sha256(fields[n].encode()).digest()[:8], np.uint32) for n in names])
    gathered = np.asarray(multihost_utils.process_allgather(digests)).reshape(jax.process_count(), len(names), -1)
    out = {}
    for j, name in enumerate(names):
        hosts = [i for i in range(len(gathered)) if not np.array_equal(gathered[i, j], gathered[0, j])]
        if hosts:
            out[name] = hosts
    return out


def check_same_workdirs(workdirs) -> None:
    """Every host must name the same workdir(s), one folder on a shared filesystem: orbax writes
    each checkpoint once for all hosts and waits for them there (with a workdir of its own per
    host the first checkpoint would wait forever)."""
    if jax.process_count() > 1:
        differ = hosts_that_differ(json.dumps(sorted(str(Path(w).resolve()) for w in workdirs)))
        if differ:
            raise ValueError(f"hosts: the workdir of process(es) {differ} differs from process 0's: give every "
                             "host the same --workdir, one folder on a filesystem they share.")


def check_same_data(batches: dict[str, dict], params: Any, fingerprint: str | None = None) -> None:
    """Every host must read the same data: each builds the global batch from its own copy of the
    files and keeps its devices' rows, so copies that differ (a corpus edited on one host, a
    relative data_dir that resolves elsewhere) would train on batches no host sees whole, or
    build models of other sizes (a vocabulary with one more symbol). Compares a digest of the
    first batch of each named iterator ("train", "validation", ...), of the parameters' shapes
    and of the task's `data_fingerprint()` (all of its data, where the task has one) across hosts."""
    if jax.process_count() == 1:
        return
    digests = {"parameter shapes": json.dumps(jax.tree.map(lambda x: list(np.shape(x)), params), sort_keys=True)}
    if fingerprint is not None:
        digests["the whole data"] = fingerprint
    for name, batch in batches.items():
        h = hashlib.sha256()
        for key in sorted(batch):
            value = np.ascontiguousarray(batch[key])
            h.update(f"{key}{value.dtype}{value.shape}".encode())
            h.update(value.tobytes())
        digests[f"first {name} batch"] = h.hexdigest()
    differ = _differing_values(digests)
    if differ:
        raise ValueError(f"hosts: process(es) {sorted(set(sum(differ.values(), [])))} read other data than "
                         f"process 0 (these differ: {', '.join(differ)}): give every host the same files, e.g. "
                         "one data_dir on the shared filesystem by an absolute path, or copies that are byte for "
                         "byte the same.")


def hosts_that_differ(text: str) -> list[int]:
    """The processes whose `text` differs from process 0's (compared by a digest gathered from all)."""
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.uint32)
    digests = np.asarray(multihost_utils.process_allgather(digest)).reshape(jax.process_count(), -1)
    return [i for i in range(len(digests)) if not np.array_equal(digests[i], digests[0])]


def host_settings(parallel, environ=os.environ) -> tuple[str | None, int | None, int | None]:
    """(coordinator address, number of processes, process id) for `jax.distributed.initialize`:
    each from `parallel` (config.parallel), else its JAX_* environment variable; all three None
    leaves the choice to JAX's cluster detection (SLURM, Open MPI, TPU pods)."""
    address = parallel.get("coordinator_address") or environ.get("JAX_COORDINATOR_ADDRESS") or None
    count = parallel.get("num_processes") or int(environ.get("JAX_NUM_PROCESSES") or 0) or None
    index = parallel.get("process_id", -1)
    if index is None or index < 0:
        index = int(environ["JAX_PROCESS_ID"]) if environ.get("JAX_PROCESS_ID") else None
    given = {"coordinator_address": address, "num_processes": count, "process_id": index}
    missing = [name for name, value in given.items() if value is None]
    if missing and len(missing) < 3:
        raise ValueError(f"config.parallel: {', '.join(missing)} not given (neither in the config nor as "
                         f"JAX_{'/JAX_'.join(m.upper() for m in missing)}): with one of the three given, give all "
                         "three, e.g. --config.parallel.coordinator_address=host0:12355 "
                         "--config.parallel.num_processes=2 --config.parallel.process_id=0 on host 0.")
    if count is not None and not 0 <= index < count:
        raise ValueError(f"config.parallel.process_id={index}: must be in [0, num_processes={count}).")
    return address, count, index


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


def to_host(tree: Any) -> Any:
    """Global arrays -> NumPy arrays of their whole value on every host. Outputs split over the
    batch (an evaluation's per-row logits) span other hosts' devices, which `np.asarray` cannot
    read: they are gathered across processes (on one host this is `np.asarray`)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


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
