"""Building ltf's CPU kernels (`ltf/kernels/*.cc`) at first use and registering their XLA FFI
targets: the forget-gate LSTM's (`ltf.cpu_kernel`) and the continuous-time LSTM's
(`ltf.ctlstm_kernel`), one shared library.

The first use compiles the C++ sources with the system's C++ compiler (`$CXX`, else g++ or c++;
OpenMP; `-march=native`) into a cache (`$LTF_KERNEL_CACHE`, else ~/.cache/ltf/kernels; one file
per set of sources, compiler, jax version and CPU), a few seconds once. Without a compiler, or
if the build fails, `available()` warns once (naming the reason and the fix) and says False, and
ltf runs the XLA scans. Also here: what both kernels read in the same form (W_h packed per block
of 16 units, the masks and resets as float32 T x B).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

KERNELS_DIR = Path(__file__).parent / "kernels"
SOURCES = ("lstm_cpu.cc", "ctlstm_cpu.cc")  # one shared library; both include kernel_common.h
HEADERS = ("kernel_common.h",)
LANES = 16  # units per block in the kernels: H must be a multiple
FORWARD_TARGET, BACKWARD_TARGET = "ltf_lstm_forward", "ltf_lstm_backward"
CTLSTM_FORWARD_TARGET, CTLSTM_BACKWARD_TARGET = "ltf_ctlstm_forward", "ltf_ctlstm_backward"
# each FFI target and the handler symbol the library exports for it
HANDLERS = ((FORWARD_TARGET, "LtfLstmForward"), (BACKWARD_TARGET, "LtfLstmBackward"),
            (CTLSTM_FORWARD_TARGET, "LtfCtlstmForward"), (CTLSTM_BACKWARD_TARGET, "LtfCtlstmBackward"))


@functools.cache
def available() -> bool:
    """Whether the kernel is built and registered (building it on first call); warns once if not."""
    try:
        library = ctypes.CDLL(str(_build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        warnings.warn(f"ltf's CPU LSTM kernel is not available, so ltf runs the XLA path for the LSTM cells "
                      f"(slower on CPU): {error}. Install a C++ compiler with OpenMP (e.g. `apt-get install g++`) "
                      "or set CXX to one; LTF_CPU_KERNEL=off silences this.", RuntimeWarning, stacklevel=2)
        return False
    for target, symbol in HANDLERS:
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return True


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return name
    raise RuntimeError("no C++ compiler found (tried $CXX, g++, c++)")


def _cpu_signature() -> str:
    """What -march=native compiles for: the CPU's model and flags (a cache shared by several
    hosts must not hand one CPU's build to another)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() or platform.machine()


def _build() -> Path:
    """The compiled kernel, from the cache or built now (atomically, so that concurrent first
    uses on one host do not read a half-written file)."""
    compiler = _compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    flags = ["-O3", "-march=native", "-std=c++17", "-fopenmp", "-fPIC", "-shared", "-isystem", jax.ffi.include_dir()]
    texts = [(KERNELS_DIR / name).read_text() for name in SOURCES + HEADERS]
    key = hashlib.sha256("\0".join([*texts, compiler, version, " ".join(flags), jax.__version__,
                                    _cpu_signature()]).encode()).hexdigest()[:20]
    cache = Path(os.environ.get("LTF_KERNEL_CACHE", Path.home() / ".cache" / "ltf" / "kernels")).expanduser()
    target = cache / f"ltf_cpu_kernels-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        built = Path(scratch) / target.name
        sources = [str(KERNELS_DIR / name) for name in SOURCES]
        result = subprocess.run([compiler, *flags, *sources, "-o", str(built)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling {', '.join(sources)} failed:\n{result.stderr[-2000:]}")
        os.replace(built, target)
    return target


def packed_weight(w_h_HxG, n_gates: int = 4):
    """W_h gate-interleaved per block of 16 units: [U][k][gate][16], U = H / 16."""
    d_hidden = w_h_HxG.shape[0]
    return jnp.transpose(w_h_HxG.reshape(d_hidden, n_gates, d_hidden // LANES, LANES), (2, 0, 1, 3))


def packed_weight_t(w_h_HxG):
    """W_hᵀ per block of 16 units: [U][G][16], the rows of dz_t W_hᵀ for one block's units."""
    d_hidden, n_gates_x_h = w_h_HxG.shape
    return jnp.transpose(w_h_HxG.reshape(d_hidden // LANES, LANES, n_gates_x_h), (0, 2, 1))


def f32_like(a) -> jax.ShapeDtypeStruct:
    """A kernel result of a's shape: the kernels write float32."""
    return jax.ShapeDtypeStruct(a.shape, jnp.float32)


def step_flags(masks_TxB, resets_TxB, n_steps: int, batch: int):
    """(masks, resets) as the kernels read them, float32 T x B: ones and zeros where None."""
    masks = jnp.ones((n_steps, batch), jnp.float32) if masks_TxB is None else masks_TxB.astype(jnp.float32)
    resets = jnp.zeros((n_steps, batch), jnp.float32) if resets_TxB is None else resets_TxB.astype(jnp.float32)
    return masks, resets
