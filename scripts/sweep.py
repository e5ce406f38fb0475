"""Runs a config's sweep (its get_sweep(arg)): every run in its own process and workdir W/<run>.

  python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --jobs 2 --report
  python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --seeds_per_process 3  # vmapped
  python scripts/sweep.py --config configs/ptb.py:epochs=2 --set data.data_dir=../ptb --workdir runs/ptb
  python scripts/sweep.py --config configs/tlstm_lm.py:arms=lstm+tlstm,seeds=2,smoke --workdir /tmp/s --jobs 2
  python scripts/sweep.py --config configs/tlstm_lm.py --workdir /shared/abl --shard 0/2  # 1/2 on the other
  python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --dry-run  # status, commands
  python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --dry-run --report  # report only

Finished runs are skipped, unfinished ones resumed from their checkpoints; run the same command
again after a crash or preemption. Each run's output goes to W/<run>/log.txt; a failed run is
reported with that path, the others go on, and the exit code is 1. --report writes results.md,
results.csv and figures into W from every run of the sweep found there (all shards' runs, when
W is shared or gathered). See ltf/sweep.py, ltf/sweep_runner.py and ltf/report.py.
"""

import signal
import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf import report, sweep, sweep_runner  # noqa: E402

flags.DEFINE_string("config", None, "Config file with get_sweep, optionally with choices: path.py:a=b,c.")
flags.DEFINE_string("workdir", None, "Sweep directory: one subdirectory per run, the report beside them.")
flags.DEFINE_integer("jobs", 1, "Runs trained at once, each its own process.")
flags.DEFINE_multi_string("set", [], "section.field=value for every run of the sweep (a data path, a "
                          "budget); kept out of the run names. Repeat for several.")
flags.DEFINE_integer("seeds_per_process", 1, "Train up to this many seeds of one arm in one process, "
                     "vmapped (one compiled step, K models); each keeps its own run dir.")
flags.DEFINE_string("shard", "0/1", "i/n: this machine takes runs i, i+n, i+2n, ... of the sweep.")
flags.DEFINE_bool("report", False, "Write results.md, results.csv and figures into the workdir.")
flags.DEFINE_bool("dry-run", False, "List the runs, their status and commands; train nothing.")
flags.DEFINE_string("metric", None, "Report metric (default: bpc, else perplexity, else loss).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # preempted: stop the runs as Ctrl-C does
    try:
        shared = sweep.parse_set(FLAGS.set)
    except ValueError as e:
        raise app.UsageError(str(e))
    the_sweep = sweep.load_sweep(FLAGS.config, shared)
    try:
        result = sweep_runner.run_sweep(the_sweep, FLAGS.workdir, jobs=FLAGS.jobs,
                                        shard_spec=sweep_runner.parse_shard(FLAGS.shard),
                                        seeds_per_process=FLAGS.seeds_per_process, dry_run=FLAGS["dry-run"].value)
    except KeyboardInterrupt:
        return 130
    if FLAGS.report:
        paths = report.write_report(FLAGS.workdir, runs=the_sweep.runs, metric=FLAGS.metric, title=FLAGS.config)
        print("report: " + ", ".join(str(p) for p in paths.values()), flush=True)
    return 1 if result.failed else 0


if __name__ == "__main__":
    app.run(main)
