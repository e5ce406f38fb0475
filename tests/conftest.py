"""Strict JAX flags for every test, one compilation cache for the run, and where the optional
real data lives."""

import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

# The tests compile several hundred small programs and run each for milliseconds, and most of
# their time was LLVM optimising the generated machine code, which buys nothing at these sizes.
# XLA's own passes (fusion, layouts, buffer assignment: what a program computes and what memory
# it holds) run as in training. LTF_TEST_XLA_OPTIMISE=1 compiles as training does. Set before
# the first computation starts the CPU backend, and inherited by the processes tests start.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("LTF_TEST_XLA_OPTIMISE", "0") != "1" and _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

# Many tests compile the same programs (a smoke config's train step, a cell's scan): one
# persistent compilation cache for the whole run lets them compile each once. It is made fresh
# by the first process (pytest itself, before xdist starts its workers, who inherit it through
# the environment, as do the scripts that tests run in subprocesses) and removed at the end, so
# no run reuses another's executables.
_OWN_CACHE = "LTF_TEST_JAX_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["LTF_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="ltf-test-jax-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["LTF_TEST_JAX_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    if _OWN_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["LTF_TEST_JAX_CACHE"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LTF_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The folder of real data sets beside the project (../shared/data or $LTF_SHARED_DATA)."""
    return SHARED_DATA


def require_file(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: this optional test reads real data; set LTF_SHARED_DATA "
                    "to the folder holding it to run the test.")
    return path
