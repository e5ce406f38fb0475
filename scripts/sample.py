"""Samples text from a trained language model.

  python scripts/sample.py --workdir runs/tlstm_lm-... --prompt "ROMEO:" --length 500 --temperature 0.8
  python scripts/sample.py --workdir runs/... --prompt "ROMEO:" --warmup_file ../shared/data/tinyshakespeare/input.txt

Reads config.json, vocab.json and the latest (or --step) checkpoint from the workdir.
"""

import sys
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf import sampling  # noqa: E402

flags.DEFINE_string("workdir", None, "A run directory written by scripts/train.py.")
flags.DEFINE_string("prompt", "\n", "Text to start from (encoded with the run's vocabulary).")
flags.DEFINE_integer("length", 500, "Tokens to generate.")
flags.DEFINE_float("temperature", 1.0, "Softmax temperature; 0 picks the most likely token.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.DEFINE_string("warmup_file", None, "Text read before the prompt (its last --warmup_chars characters), "
                    "so that sampling starts from a state like training's, not from zeros.")
flags.DEFINE_integer("warmup_chars", 500, "How much of --warmup_file to read.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    warmup = ""
    if FLAGS.warmup_file:
        warmup = Path(FLAGS.warmup_file).read_text(encoding="utf-8", errors="replace")[-FLAGS.warmup_chars:]
    text = sampling.sample_from_workdir(FLAGS.workdir, prompt=FLAGS.prompt, length=FLAGS.length,
                                        temperature=FLAGS.temperature, seed=FLAGS.seed, step=FLAGS.step,
                                        warmup=warmup)
    print(text)


if __name__ == "__main__":
    app.run(main)
