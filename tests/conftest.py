"""Strict JAX flags for every test, and where the optional real data lives."""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

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
