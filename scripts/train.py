"""Trains a model from a config file.

  python scripts/train.py --config configs/tlstm_lm.py
  python scripts/train.py --config configs/tlstm_lm.py:cell=adaptive,smoke --config.opt.lr=1e-3
  python scripts/train.py --config configs/tlstm_lm.py --workdir runs/mine   # again: resumes
  python scripts/train.py --config configs/tlstm_lm.py:smoke --seeds 0,1,2 --workdir 'runs/s/seed={seed}'

--workdir defaults to runs/<config>-<choices>-<time>. Writes config.json, metrics.jsonl,
TensorBoard events (tensorboard/) and orbax checkpoints (checkpoints/) there.

--seeds trains one model per seed in one program (jax.vmap over the models: one compiled step);
each seed gets the workdir of a separate run with that seed, --workdir with {seed} filled in.
"""

import datetime
import os
import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf import allocator, train  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file, optionally with choices: path.py:a=b,c.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; a run found there is resumed.")
flags.DEFINE_list("seeds", None, "Seeds trained at once, vmapped (overrides config.seed); "
                  "--workdir must then contain {seed}.")
flags.DEFINE_bool("keep_freed_memory", True, "glibc malloc keeps freed memory for reuse (ltf/allocator.py: "
                  "~15% faster steps on CPU, at the cost of a larger heap). Not with config.model.remat, "
                  "which asks for memory first. --nokeep_freed_memory: glibc's defaults.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def default_workdir(config_arg: str) -> Path:
    path, _, choices = config_arg.partition(":")
    name = "-".join(filter(None, [Path(path).stem, re.sub(r"[^\w.=]+", "_", choices)]))
    return Path("runs") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def main(argv):
    del argv
    # before the first JAX computation starts XLA's threads; remat runs keep glibc's defaults,
    # under which freed blocks go back to the OS (peak RSS 2.0 instead of 3.5 GB at T = 16,384)
    if FLAGS.keep_freed_memory and not FLAGS.config.model.get("remat", False):
        allocator.keep_freed_memory()
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config_arg = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
    if config_arg is None:
        config_arg = sys.argv[sys.argv.index("--config") + 1]
    # "~" expanded here too: a quoted workdir (as `scripts/sweep.py --dry-run` prints them) would
    # otherwise make a directory named "~" in the current one
    workdir = os.path.expanduser(FLAGS.workdir) if FLAGS.workdir else str(default_workdir(config_arg))
    if not FLAGS.seeds:
        print(f"workdir: {workdir}")
        report = {None: train.train_and_evaluate(FLAGS.config, workdir)}
    else:
        try:
            seeds = [int(s) for s in FLAGS.seeds]
        except ValueError:
            raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: expected integers, e.g. --seeds=0,1,2")
        if len(set(seeds)) != len(seeds):
            raise app.UsageError(f"--seeds={','.join(FLAGS.seeds)}: a seed is given twice")
        if "{seed}" not in workdir:
            workdir = workdir if FLAGS.workdir else str(Path(workdir) / "seed={seed}")
            if "{seed}" not in workdir:
                raise app.UsageError(f"--workdir={workdir}: with --seeds it must contain {{seed}} "
                                     "(e.g. runs/x/seed={seed}), one workdir per seed")
        workdirs = {s: Path(workdir.replace("{seed}", str(s))) for s in seeds}
        print("workdirs: " + ", ".join(map(str, workdirs.values())))
        report = train.train_seeds(FLAGS.config, workdirs)
    for seed, metrics in report.items():
        for split, values in metrics.items():
            who = "" if seed is None else f"seed={seed} "
            print(f"{who}{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))


if __name__ == "__main__":
    app.run(main)
