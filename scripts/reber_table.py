"""The CERG sweep as the paper's Table 2: percent of networks perfect / good / bad, per arm.

  python scripts/sweep.py --config configs/reber.py --workdir runs/cerg --seeds_per_process 10
  python scripts/reber_table.py runs/cerg                      # prints; --out FILE writes markdown
  python scripts/reber_table.py runs/cerg --evaluated data.eval_batches=10000   # from re-evaluations

`--evaluated KEY=VALUE ...` rates each network by its latest test record in
<run>/evaluations.jsonl made with exactly those overrides (`scripts/evaluate.py --set ...`: e.g.
test streams of 1M symbols, 10x the paper's) instead of the test metrics its training logged;
networks without such a record are left out.

A network (one seed) is rated on its final test streams (Gers, Schmidhuber & Cummins 2000):
"perfect" when every stream is error-free, "good" when the mean error-free length exceeds
1,000 symbols, "bad" otherwise (`ltf.data.synthetic.reber.rate_run`). Beside each percentage, a 95%
Wilson interval for the proportion, since a few dozen seeds leave wide bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf.evaluation import RECORDS_FILE  # noqa: E402
from ltf.report import collect  # noqa: E402
from ltf.sweep import parse_set  # noqa: E402

# The paper's Table 2 (percent perfect / good / bad of 100 networks).
PAPER = {
    "LSTM with external reset": (74, 0, 26),
    "standard LSTM (no forget gate), no reset": (0, 1, 99),
    "LSTM with forget gates": (18, 29, 53),
    "forget gates with learning-rate decay": (62, 6, 32),
}
RATINGS = ("perfect", "good", "bad")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(test: dict, good_length: float = 1_000) -> str:
    """The rating from a run's logged test metrics (perfect = fraction of error-free streams)."""
    if test["perfect"] >= 1.0:
        return "perfect"
    return "good" if test["error_free_length"] > good_length else "bad"


def evaluated_test(run_dir: Path, overrides: dict) -> dict | None:
    """The latest test record in run_dir/evaluations.jsonl made with exactly `overrides`, or None."""
    path = run_dir / RECORDS_FILE
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    matching = [r for r in records if r["split"] == "test" and r.get("overrides", {}) == overrides]
    return matching[-1] if matching else None


def table(workdir: Path, evaluated: dict | None = None) -> str:
    """The markdown table; `evaluated`: rate by re-evaluations with these overrides (see above)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RATINGS, 0))
    lengths: dict[str, list[float]] = defaultdict(list)
    for run in collect(workdir):
        test = run.final.get("test") if evaluated is None else evaluated_test(workdir / run.name, evaluated)
        if test is None:
            continue  # unfinished, or not evaluated so
        counts[run.arm][rate(test)] += 1
        lengths[run.arm].append(test["error_free_length"])
    lines = ["| arm | n | perfect % | good % | bad % | median error-free length |", "|---|---|---|---|---|---|"]
    for arm, c in counts.items():
        n = sum(c.values())
        cells = []
        for r in RATINGS:
            lo, hi = wilson(c[r], n)
            cells.append(f"{100 * c[r] / n:.0f} [{100 * lo:.0f}, {100 * hi:.0f}]")
        median = sorted(lengths[arm])[len(lengths[arm]) // 2]
        lines.append(f"| `{arm}` | {n} | " + " | ".join(cells) + f" | {median:,.0f} |")
    lines += ["", "Gers, Schmidhuber & Cummins (2000), Table 2, 100 networks each:", "",
              "| row | perfect % | good % | bad % |", "|---|---|---|---|"]
    lines += [f"| {row} | {p} | {g} | {b} |" for row, (p, g, b) in PAPER.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--evaluated", nargs="+", metavar="KEY=VALUE",
                        help="rate by the test records of scripts/evaluate.py --set with these overrides")
    args = parser.parse_args()
    text = table(args.workdir, parse_set(args.evaluated) if args.evaluated else None)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
