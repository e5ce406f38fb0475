"""The naive forecasts of a forecasting config, on the very windows its runs are scored on.

  python scripts/forecast_baselines.py --config configs/forecast.py:kind=subset
  python scripts/forecast_baselines.py --config configs/forecast.py:series=sunspots_monthly,L=264,H=12

Last value (the last observed value of the look-back, repeated), seasonal naive (the value
one season earlier) and seasonal change (the seasonal naive plus the last season's change: what
a trend adds), MSE and MAE on the original scale per split (`ltf.baselines`), as a markdown
table to set beside the sweep's report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from ltf.config_lib import load_config  # noqa: E402
from ltf import baselines  # noqa: E402
from ltf.tasks.registry import make_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a forecasting config, e.g. configs/forecast.py:kind=subset")
    args = parser.parse_args()
    config = load_config(args.config)
    if config.task.name != "forecast":
        parser.error(f"--config {args.config}: task.name is {config.task.name!r}, not 'forecast'")
    task = make_task(config)
    table = baselines.forecast_baselines(task.data, task.season)
    print(f"{task.data!r}\n")
    print("| baseline | split | mse | mae |\n|---|---|---|---|")
    for split, row in table.items():
        for name, errors in row.items():
            print(f"| {name} | {split} | {errors['mse']:.4g} | {errors['mae']:.4g} |")


if __name__ == "__main__":
    main()
