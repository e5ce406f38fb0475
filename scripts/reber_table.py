"""The CERG sweep as the paper's Table 2: percent of networks perfect / good / bad, per arm.

  python scripts/sweep.py --config configs/reber.py --workdir runs/cerg --seeds_per_process 10
  python scripts/reber_table.py runs/cerg                      # prints; --out FILE writes markdown

A network (one seed) is rated on its final test streams (Gers, Schmidhuber & Cummins 2000):
"perfect" when every stream is error-free, "good" when the mean error-free length exceeds
1,000 symbols, "bad" otherwise (`ltf.data.synthetic.reber.rate_run`). Beside each percentage, a 95%
Wilson interval for the proportion, since a few dozen seeds leave wide bounds.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf.report import collect  # noqa: E402

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


def table(workdir: Path) -> str:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RATINGS, 0))
    lengths: dict[str, list[float]] = defaultdict(list)
    for run in collect(workdir):
        if "test" not in run.final:
            continue  # unfinished
        counts[run.arm][rate(run.final["test"])] += 1
        lengths[run.arm].append(run.final["test"]["error_free_length"])
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
    args = parser.parse_args()
    text = table(args.workdir)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
