"""One measurement of scripts/bench.py: a model's train step in one implementation, timed, and the
result row. bench.py runs `run_worker` once per (model, impl, cell, size), each in a process of
its own (`bench.py --worker`, one JSON line on stdout). The models and their implementations
("model", "impl", "cell", "path") are built in scripts/bench_models.py.

A JAX step is `jax.jit` with the train state (params, optimiser state) donated and Adam from
optax; the clock stops after `jax.block_until_ready`. A torch step is torch.optim.Adam's. The
first step (compilation) and `warmup` more are excluded from the timing. `remat` builds the ltf
models with `remat=True`.

Devices: the JAX rows run on JAX's default backend ("backend", "device_kind"); torch on CUDA when
`torch.cuda.is_available()` (cuDNN's LSTM, model and data on the GPU, `torch.cuda.synchronize()`
before the clock stops; the torch device and cuDNN version in "versions"), else on the CPU with
`torch.set_num_threads(os.cpu_count())`; torch rows are skipped with a note when torch cannot be
imported. "peak_device_mb": the accelerator's peak memory in use (None on the CPU).
`malloc="tuned"` calls `ltf.allocator.keep_freed_memory()` before anything runs, in CPU workers
only (the row's "malloc" says whether it applied). Whether a worker runs on the CPU is told
without starting JAX's backends or CUDA where no accelerator can be there: started first, their
threads would keep malloc arenas of their own (~19,000 page faults per step at 32x128x256).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models.py, also when loaded by path

from bench_models import (INPUT_PROJECTIONS, LTF_CELLS, MODELS, input_path, jax_problem,  # noqa: E402,F401
                          ltf_cell, split_cell, torch_problem)

IMPLS = ("ltf", "ltf_xla", "flax", "torch")
# ltf_xla: ltf with LTF_CPU_KERNEL=off, its XLA scans even where the compiled CPU kernel applies
LTF_IMPLS = ("ltf", "ltf_xla")
MALLOCS = ("default", "tuned")  # glibc as it comes, or ltf.allocator.keep_freed_memory() in every CPU worker
LR = 1e-3


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def time_steps(step, n_warmup: int, n_steps: int) -> tuple[float, list[float]]:
    """Calls step() (which blocks until done) once for compilation, n_warmup more, n_steps timed."""
    t0 = time.perf_counter()
    step()
    compile_s = time.perf_counter() - t0
    for _ in range(n_warmup):
        step()
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return compile_s, times


# -- JAX: ltf and flax -----------------------------------------------------------------------------

def jax_step(impl: str, cell: str, B: int, T: int, H: int, E: int, *, model: str = "char_lm", seed: int = 0,
             remat: bool = False, forward_backward: bool = False, input_projection: str = "auto"):
    """The measured JAX step as a no-argument callable that runs one step and blocks until it is
    done (the train state lives inside it); also what `scripts/bench_profile.py` profiles."""
    import jax
    import optax

    params, loss_fn, batch = jax_problem(model, impl, cell, B, T, H, E, seed=seed, remat=remat,
                                         input_projection=input_projection)
    if forward_backward:
        fb = jax.jit(jax.value_and_grad(loss_fn))
        step = lambda: jax.block_until_ready(fb(params, *batch))
    else:
        tx = optax.adam(LR)

        def train_step(state, *batch):
            params, opt_state = state
            loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        train_step = jax.jit(train_step, donate_argnums=0)
        holder = {"state": (params, tx.init(params))}
        del params

        def step():
            holder["state"], loss = train_step(holder["state"], *batch)
            jax.block_until_ready((holder["state"], loss))

    jax.block_until_ready(batch)
    return step


def _jax_worker(model: str, impl: str, cell: str, B: int, T: int, H: int, E: int, *, steps: int, warmup: int,
                forward_backward: bool, seed: int, remat: bool, input_projection: str) -> dict:
    import jax

    step = jax_step(impl, cell, B, T, H, E, model=model, seed=seed, remat=remat,
                    forward_backward=forward_backward, input_projection=input_projection)
    base_rss = _rss_mb()
    compile_s, times = time_steps(step, warmup, steps)
    device = jax.devices()[0]
    stats = device.memory_stats() or {}  # None on the CPU
    return {"compile_s": compile_s, "times": times, "base_rss_mb": base_rss, "backend": jax.default_backend(),
            "peak_device_mb": stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None,
            "versions": {"jax": jax.__version__, "device_kind": device.device_kind,
                         "jax_backend": jax.default_backend()}}


# -- PyTorch ---------------------------------------------------------------------------------------

def _torch_worker(model: str, B: int, T: int, H: int, E: int, *, steps: int, warmup: int, forward_backward: bool,
                  seed: int) -> dict:
    import torch

    on_cuda = torch.cuda.is_available()
    device = torch.device("cuda" if on_cuda else "cpu")
    if not on_cuda:
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(seed)
    module, loss_fn = torch_problem(model, B, T, H, E, device)
    opt = torch.optim.Adam(module.parameters(), lr=LR)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        if not forward_backward:
            opt.step()
        if on_cuda:  # kernels run asynchronously: the step ends when the GPU is done
            torch.cuda.synchronize()

    base_rss = _rss_mb()
    compile_s, times = time_steps(step, warmup, steps)
    versions = {"torch": torch.__version__, "torch_device": "cpu", "torch_threads": torch.get_num_threads()}
    if on_cuda:
        versions.update(torch_device=f"cuda: {torch.cuda.get_device_name(device)}",
                        cudnn=torch.backends.cudnn.version())
    return {"compile_s": compile_s, "times": times, "base_rss_mb": base_rss, "backend": device.type,
            "peak_device_mb": torch.cuda.max_memory_allocated(device) / 2**20 if on_cuda else None,
            "versions": versions}


# -- the worker ------------------------------------------------------------------------------------

def _jax_may_use_accelerator() -> bool:
    """Whether JAX has a backend besides the CPU to start, told without starting any: a plugin is
    installed (jax-cuda*, jax-rocm*, libtpu) and JAX_PLATFORMS does not hold it to the CPU."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms and set(platforms.lower().split(",")) <= {"cpu"}:
        return False
    if importlib.util.find_spec("libtpu") is not None or any(importlib.metadata.entry_points(group="jax_plugins")):
        return True
    spec = importlib.util.find_spec("jax_plugins")
    return spec is not None and any(pkgutil.iter_modules(spec.submodule_search_locations or []))


def runs_on_cpu(impl: str) -> bool:
    """Whether `impl` will run on the CPU; JAX's backends or CUDA are started to ask only where an
    accelerator may be (a JAX plugin; the NVIDIA driver for torch)."""
    if impl == "torch":
        if not Path("/proc/driver/nvidia").exists():
            return True
        import torch

        return not torch.cuda.is_available()
    if not _jax_may_use_accelerator():
        return True
    import jax

    return jax.default_backend() == "cpu"


@contextlib.contextmanager
def kernel_setting(value: str | None):
    """LTF_CPU_KERNEL=value while the step is traced (`ltf.cpu_kernel` reads it then), restored
    after, so that an in-process worker (the tests) leaves the environment as it was."""
    if value is None:
        yield
        return
    saved = os.environ.get("LTF_CPU_KERNEL")
    os.environ["LTF_CPU_KERNEL"] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ["LTF_CPU_KERNEL"]
        else:
            os.environ["LTF_CPU_KERNEL"] = saved


def recurrence_kernel(impl: str, cell: str, H: int) -> str | None:
    """What ran ltf's recurrence: "cpu" (`ltf.cpu_kernel`'s compiled kernel, with remat through
    `ltf.kernel_remat`) or "xla" (the scans); None for flax and torch."""
    if impl not in LTF_IMPLS:
        return None
    import jax
    import jax.numpy as jnp

    from ltf import cpu_kernel

    layer_cell = ltf_cell(cell)
    zs = jax.ShapeDtypeStruct((1, 1, len(layer_cell.gates) * H), jnp.float32)
    return "cpu" if cpu_kernel.applies(layer_cell, zs) else "xla"


def run_worker(impl: str, cell: str, B: int, T: int, H: int, *, model: str = "char_lm", d_embed: int | None = None,
               steps: int = 10, warmup: int = 2, forward_backward: bool = False, seed: int = 0,
               remat: bool = False, malloc: str = "default", input_projection: str = "auto") -> dict:
    """One measurement in this process. Returns a result row (its columns: scripts/bench.py)."""
    for name, value, allowed in (("model", model, MODELS), ("impl", impl, IMPLS), ("malloc", malloc, MALLOCS),
                                 ("input_projection", input_projection, INPUT_PROJECTIONS)):
        if value not in allowed:
            raise ValueError(f"{name}={value!r}: allowed values are {allowed}.")
    if impl != "ltf" and cell != "lstm":
        raise ValueError(f"impl={impl!r} has only cell='lstm' (flax's OptimizedLSTMCell, torch.nn.LSTM), "
                         f"got {cell!r}.")
    E = H if d_embed is None else d_embed
    remat = remat and impl in LTF_IMPLS
    row = {"model": model, "impl": impl, "cell": cell, "B": B, "T": T, "H": H, "E": E,
           "mode": "forward_backward" if forward_backward else "train", "steps": steps, "remat": remat,
           "malloc": "default",
           "input_projection": input_projection if model == "char_lm" and impl in LTF_IMPLS else None}
    if impl == "torch" and importlib.util.find_spec("torch") is None:
        return {**row, "path": input_path(model, impl, cell, B, T, H, E), "skipped": "torch is not importable"}
    if malloc == "tuned" and runs_on_cpu(impl):  # before any computation starts the libraries' threads
        from ltf import allocator

        if not allocator.keep_freed_memory():
            raise RuntimeError("--malloc tuned needs glibc (Linux); use --malloc default here.")
        row["malloc"] = "tuned"
    row["path"] = input_path(model, impl, cell, B, T, H, E, remat=remat, input_projection=input_projection)
    row["kernel"] = None
    kwargs = dict(steps=steps, warmup=warmup, forward_backward=forward_backward, seed=seed)
    if impl == "torch":
        out = _torch_worker(model, B, T, H, E, **kwargs)
    else:
        with kernel_setting("off" if impl == "ltf_xla" else None):
            row["kernel"] = recurrence_kernel(impl, cell, H)
            out = _jax_worker(model, impl, cell, B, T, H, E, remat=remat, input_projection=input_projection,
                              **kwargs)
    step_s = statistics.median(out["times"])
    row.update({"step_ms": 1e3 * step_s, "min_ms": 1e3 * min(out["times"]), "tokens_per_s": B * T / step_s,
                **{k: v for k, v in out.items() if k != "times"}, "peak_rss_mb": _rss_mb(),
                "load_1m": os.getloadavg()[0]})
    return row
