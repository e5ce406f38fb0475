"""Every dependency pyproject.toml declares is imported by ltf's code; the test extra's by the tests.

`pip install` should pull nothing that no module uses. A package counts as used when a module
imports it (`import x`, `from x import`, `importlib.import_module("x...")`) or reads it as data
(`importlib.metadata` / `importlib.resources` of the package); the few exceptions say why.
"""

import ast
import re
import tomllib

from conftest import REPO

# distribution -> the name code imports it by, where the two differ
IMPORT_NAMES = {"orbax-checkpoint": "orbax", "tensorflow-datasets": "tensorflow_datasets",
                "absl-py": "absl", "scikit-learn": "sklearn", "pytest-timeout": None,
                "pytest-xdist": None, "tensorflow-cpu": "tensorflow"}
# declared without an import of their own, and why
NOT_IMPORTED = {
    "jaxlib": "jax's compiled backend: pinned beside jax so that the two match",
    "importlib_resources": "tensorflow-datasets imports it for builders inside a package (ltf/data/tfds) "
                           "but declares it only for Pythons before 3.11",
    "pytest-timeout": "a pytest plugin (the timeout in pyproject's [tool.pytest.ini_options])",
    "pytest-xdist": "a pytest plugin (-n 2 in addopts)",
    "ipykernel": "the kernel nbclient starts to run the notebooks",
    "tensorflow-cpu": "optional: TFDS's catalog builders that download (tiny_shakespeare online) need TensorFlow",
}


def declared(group: str | None = None) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0] for spec in specs]


def first_text(node) -> str | None:
    """The literal start of a call's first argument: "x.y" or f"x.{...}" -> its text up to a brace."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return node.values[0].value
    return None


def used_names(*globs: str, exclude: str = "") -> set[str]:
    """Top-level package names the code in these files imports or reads as data."""
    names = set()
    for pattern in globs:
        for path in REPO.glob(pattern):
            if exclude and path.match(exclude):
                continue
            source = path.read_text()
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
                elif isinstance(node, ast.Call) and node.args and (text := first_text(node.args[0])):
                    if ast.unparse(node.func).endswith(("import_module", "importorskip", "metadata.version",
                                                        "resources.files", "metadata.distribution", "find_spec")):
                        names.add(text.split(".")[0])
    return names


def unused(dists: list[str], names: set[str]) -> list[str]:
    return [d for d in dists if d not in NOT_IMPORTED
            and IMPORT_NAMES.get(d, d.replace("-", "_")) not in names]


def test_every_dependency_is_imported_by_ltf_or_its_scripts():
    """The benchmarks' peers (Flax, torch) are the bench extra's, not every user's."""
    names = used_names("ltf/**/*.py", "configs/*.py", "scripts/*.py", exclude="bench*.py")
    assert not unused(declared(), names), "declared in [project.dependencies] but imported nowhere"


def test_every_extra_is_used_by_what_it_is_for():
    for extra, globs in {"test": ("tests/*.py",), "notebooks": ("notebooks/*.py", "tests/test_notebooks.py"),
                         "bench": ("scripts/bench*.py",), "tf": ("ltf/**/*.py", "tests/*.py")}.items():
        assert not unused(declared(extra), used_names(*globs)), f"declared in the {extra} extra but unused"


def test_the_check_sees_an_unused_package():
    assert unused(["numpy", "left-pad"], used_names("ltf/**/*.py")) == ["left-pad"]
