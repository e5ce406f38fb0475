"""Preparing ltf's TFDS builders without TensorFlow, and a key for prepared data.

`tfds build` cannot start here without TensorFlow: its entry point
(tensorflow_datasets.scripts.cli.main, TFDS 4.9.10) imports `convert_format`, whose helper
module evaluates `tf.train.Example` at import time, so the command stops with
"ModuleNotFoundError: No module named 'tensorflow'" before it reads an argument. The build
command's own code (tensorflow_datasets.scripts.cli.build) needs no TensorFlow: called from
Python with `physionet2012 --imports ltf.data.tfds.physionet2012 --manual_dir M --data_dir D
--file_format array_record` it prepared the data set here, so with TensorFlow installed
(pip install 'ltf[tf]') `tfds build` with those arguments works too. Without it, use the
Python API, which is what this module runs:

    builder = Physionet2012(data_dir=DATA, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=MANUAL))
    tfds.data_source("physionet2012", data_dir=DATA, split="set_a")   # random access, numpy

or from a shell `python -m ltf.data.tfds.prepare NAME --manual_dir MANUAL --data_dir DATA`
(NAME: physionet2012, ptb, tiny_shakespeare_local), which prints the splits and their sizes.
`tfds.data_source(NAME, ...)` finds the builder once its module is imported.

`files_key` hashes the files a preparation read; ltf.data.series.physionet prepares into a
folder named by it, so that changed files give a new preparation instead of a stale one.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import textwrap
from pathlib import Path

try:  # TFDS writes and reads the array_record format with it, but declares it on Linux only
    from array_record.python import array_record_module  # noqa: F401
except ImportError as e:
    raise ImportError("ltf's TFDS builders store their data as array_record files: "
                      "pip install 'array_record>=0.8.6'") from e
import tensorflow_datasets as tfds

FILE_FORMAT = "array_record"
# name -> the module that defines (and registers) its builder
BUILDERS = {"physionet2012": "ltf.data.tfds.physionet2012", "ptb": "ltf.data.tfds.ptb",
            "tiny_shakespeare_local": "ltf.data.tfds.tiny_shakespeare_local"}


def builder_class(name: str) -> type[tfds.core.DatasetBuilder]:
    if name not in BUILDERS:
        raise ValueError(f"{name!r} is not one of ltf's TFDS builders: {', '.join(BUILDERS)}")
    module = importlib.import_module(BUILDERS[name])
    return next(v for v in vars(module).values()
                if isinstance(v, type) and issubclass(v, tfds.core.DatasetBuilder)
                and getattr(v, "name", None) == name)


def prepare(builder_cls, manual_dir, data_dir) -> tfds.core.DatasetBuilder:
    """The builder over data_dir, prepared from manual_dir first if it is not yet."""
    builder = builder_cls(data_dir=str(data_dir), file_format=FILE_FORMAT)
    if builder.data_path.exists():  # checked first: is_prepared() warns about an absent folder
        if not builder.is_prepared():  # TFDS would "reuse" it and fail when reading
            raise FileExistsError(f"{builder.data_path} holds no complete {builder_cls.name} "
                                  "data set (no dataset_info.json): delete it to prepare again")
        return builder
    if manual_dir is None or not Path(manual_dir).is_dir() or not any(
            Path(manual_dir).iterdir()):  # TFDS would raise an AssertionError
        raise FileNotFoundError(f"{builder_cls.name}: no manual folder {manual_dir}, or an "
                                "empty one.\n"
                                + textwrap.dedent(builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS))
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    except FileExistsError:
        # Another process prepared it meanwhile (TFDS writes into a temporary folder and
        # renames it at the end): read theirs, from the same files when data_dir is keyed.
        builder = builder_cls(data_dir=str(data_dir), file_format=FILE_FORMAT)
        if not builder.is_prepared():
            raise
    return builder


def files_key(paths, *extra) -> str:
    """16 hex digits of sha256 over the files' names and bytes (a folder: its files, sorted
    by name, recursively) and `extra` (a builder version, a format)."""
    h = hashlib.sha256(repr(extra).encode())
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            h.update(f"{p.relative_to(path.parent)}:{p.stat().st_size}:".encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("--manual_dir", required=True, help="the folder with the source files")
    parser.add_argument("--data_dir", default=str(Path.home() / "tensorflow_datasets"))
    args = parser.parse_args(argv)
    builder = prepare(builder_class(args.name), args.manual_dir, args.data_dir)
    sizes = {s: info.num_examples for s, info in builder.info.splits.items()}
    print(f"{args.name} in {builder.data_dir}: {sizes}")


if __name__ == "__main__":
    main()
