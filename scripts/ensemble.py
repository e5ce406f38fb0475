"""Scores ensembles of trained runs: each arm of a sweep as the mean of its seeds, or runs named.

  python scripts/ensemble.py --sweep runs/forecast_poisson                  # every arm's seeds
  python scripts/ensemble.py --sweep runs/physionet_pub --metric auroc
  python scripts/ensemble.py --workdir runs/a/seed=0 --workdir runs/b/seed=0   # any runs of one task
  python scripts/ensemble.py --workdir 'runs/tune/*/cell=grud*'              # a pattern, quoted

Members are scored at their best validation checkpoint; their mean prediction (a forecast, a
probability) is scored as one model (ltf/ensemble.py). With --sweep, writes W/ensembles.md (one
row per arm) and W/ensembles.json beside the sweep's results.md.
"""

import glob
import json
import sys
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf.ensemble import ensembles_of_sweep, evaluate_ensemble  # noqa: E402
from ltf.writers import json_safe  # noqa: E402

flags.DEFINE_string("sweep", None, "A sweep workdir (scripts/sweep.py): one ensemble per arm, of its seeds.")
flags.DEFINE_multi_string("workdir", None, "A run directory to ensemble, or a glob pattern of them "
                          "(repeatable; at least 2 runs in all, of one task and data config).")
flags.DEFINE_string("checkpoint", "best", "'best' (by validation), 'latest' or a step, for every member.")
flags.DEFINE_list("split", None, "Splits to score (default: the task's evaluation splits).")
flags.DEFINE_list("metric", None, "Metrics in the table (default: every one the task reports).")
FLAGS = flags.FLAGS


def expand(patterns: list[str]) -> list[str]:
    """Run directories from --workdir values: a glob pattern gives its matches, sorted; a pattern
    that matches nothing is an error (a plain path is kept: its own error comes later)."""
    out = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise app.UsageError(f"--workdir {pattern!r} matches no directory")
            out += matches
        else:
            out.append(pattern)
    return out


def table(ensembles: dict, metrics=None) -> str:
    """Markdown: one row per ensemble, a column per split and metric."""
    first = next(iter(ensembles.values()))["splits"]
    columns = [(s, m) for s, values in first.items() for m in values if metrics is None or m in metrics]
    lines = ["| ensemble | members | " + " | ".join(f"{s} {m}" for s, m in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name, result in ensembles.items():
        cells = [f"{result['splits'][s][m]:.4f}" for s, m in columns]
        lines.append(f"| `{name}` | {len(result['members'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if (FLAGS.sweep is None) == (FLAGS.workdir is None):
        raise app.UsageError("give either --sweep W or --workdir A --workdir B [...]")
    if FLAGS.sweep:
        ensembles = ensembles_of_sweep(FLAGS.sweep, checkpoint=FLAGS.checkpoint, splits=FLAGS.split)
        if not ensembles:
            raise app.UsageError(f"{FLAGS.sweep}: no arm has 2 or more trained runs to ensemble")
    else:
        ensembles = {"runs": evaluate_ensemble(expand(FLAGS.workdir), checkpoint=FLAGS.checkpoint,
                                               splits=FLAGS.split)}
    markdown = table(ensembles, FLAGS.metric)
    print(markdown, end="")
    if FLAGS.sweep:
        out = Path(FLAGS.sweep)
        title = f"# Ensembles of each arm's seeds (mean prediction, members at checkpoint {FLAGS.checkpoint!r})\n\n"
        (out / "ensembles.md").write_text(title + markdown)
        (out / "ensembles.json").write_text(json.dumps(json_safe(ensembles), indent=1))
        print(f"wrote {out / 'ensembles.md'} and {out / 'ensembles.json'}")


if __name__ == "__main__":
    app.run(main)
