"""Evaluates a trained run's best (or a named) checkpoint on its splits, or on other text.

  python scripts/evaluate.py --workdir runs/ptb                              # best checkpoint, every split
  python scripts/evaluate.py --workdir runs/ptb --split test --data_dir ~/data/ptb   # PTB's test file
  python scripts/evaluate.py --workdir runs/ptb --split test --data_dir ~/data/ptb --batch_size 1
  python scripts/evaluate.py --workdir runs/char --checkpoint 2000 --data_dir essay.txt   # a file, whole
  python scripts/evaluate.py --workdir runs/cerg/cell=lstm,seed=0 --split test --set data.eval_batches=10000
                                                  # CERG: test streams of 1M symbols, 10x the paper's

Prints the metrics and appends them to <workdir>/evaluations.jsonl (ltf/evaluation.py).
"""

import sys
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf.evaluation import RECORDS_FILE, evaluate_run  # noqa: E402
from ltf.sweep import parse_set  # noqa: E402

flags.DEFINE_string("workdir", None, "A run directory written by scripts/train.py.")
flags.DEFINE_string("checkpoint", "best", "'best' (lowest validation loss), 'latest' or a step.")
flags.DEFINE_list("split", None, "Splits to evaluate (default: every split there is).")
flags.DEFINE_string("data_dir", None, "Language models: a text file (evaluated whole, as split 'file') "
                    "or a folder laid out as the run's corpus, encoded with the run's vocabulary.")
flags.DEFINE_integer("max_batches", None, "Evaluate only the first N batches of each split.")
flags.DEFINE_integer("batch_size", None, "Rows a split is cut into (default the run's data.eval_batch_size); "
                     "1 reads it as one stream, as Zaremba et al.'s code scored PTB's test set.")
flags.DEFINE_multi_string("set", [], "section.field=value: a config field changed for this evaluation only, "
                          "e.g. data.eval_batches=10000 (repeatable).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    results = evaluate_run(FLAGS.workdir, checkpoint=FLAGS.checkpoint, splits=FLAGS.split,
                           data_dir=FLAGS.data_dir, max_batches=FLAGS.max_batches,
                           batch_size=FLAGS.batch_size, overrides=parse_set(FLAGS.set))
    for split, values in results.items():
        print(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items()))
    print(f"appended to {Path(FLAGS.workdir) / RECORDS_FILE}")


if __name__ == "__main__":
    app.run(main)
