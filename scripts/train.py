"""Trains a model from a config file.

  python scripts/train.py --config configs/tlstm_lm.py
  python scripts/train.py --config configs/tlstm_lm.py:cell=adaptive,smoke --config.opt.lr=1e-3
  python scripts/train.py --config configs/tlstm_lm.py --workdir runs/mine   # again: resumes

--workdir defaults to runs/<config>-<choices>-<time>. Writes config.json, metrics.jsonl,
TensorBoard events (tensorboard/) and orbax checkpoints (checkpoints/) there.
"""

import datetime
import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf import train  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Config file, optionally with choices: path.py:a=b,c.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory; a run found there is resumed.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def default_workdir(config_arg: str) -> Path:
    path, _, choices = config_arg.partition(":")
    name = "-".join(filter(None, [Path(path).stem, re.sub(r"[^\w.=]+", "_", choices)]))
    return Path("runs") / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    config_arg = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), None)
    if config_arg is None:
        config_arg = sys.argv[sys.argv.index("--config") + 1]
    workdir = Path(FLAGS.workdir) if FLAGS.workdir else default_workdir(config_arg)
    print(f"workdir: {workdir}")
    metrics = train.train_and_evaluate(FLAGS.config, workdir)
    for split, values in metrics.items():
        print(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))


if __name__ == "__main__":
    app.run(main)
