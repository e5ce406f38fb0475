# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sweep results: the ablation table and plots
#
# `scripts/sweep.py` trains every run of a config's `get_sweep(arg)` in its own workdir
# `W/<run>` and, with `--report`, writes `results.md`, `results.csv` and figures into `W`
# (`ltf.report.write_report`). This notebook shows them for a sweep workdir: `$LTF_SWEEP_DIR`,
# else `runs/ablation` in the repository, the README's
#
#     python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --jobs 2 --report
#
# When that workdir holds no sweep (or under `LTF_NOTEBOOK_SMOKE=1`, as in the test suite), it
# first runs a tiny one itself, `lstm` against `lstm_noforget`, 2 seeds each, `smoke`-sized
# (seconds per run), so that it works standalone.

# %%
# Setup: find the ltf repository (configs/ is read below) and make `ltf` importable. Locally: the
# checkout this notebook runs in, or the one ltf is installed from (editable); ltf is pip-installed
# from it only when it is not importable. In Colab: a clone of the git URL in $LTF_REPO (run
# `%env LTF_REPO=<git URL of ltf>` first; `LTF_REF` picks a branch or commit). See notebooks/README.md.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path


def installed_ltf():
    """The directory of an importable ltf package (not just a folder named ltf), or None."""
    spec = importlib.util.find_spec("ltf")
    return None if spec is None or spec.origin is None else Path(spec.origin).resolve().parent


def find_repo():
    for d in (Path.cwd(), *Path.cwd().parents):
        pyproject = d / "pyproject.toml"
        if pyproject.is_file() and 'name = "ltf"' in pyproject.read_text():
            return d
    package = installed_ltf()
    if package is not None and (package.parent / "configs").is_dir():  # an editable install
        return package.parent
    return None


REPO = find_repo()
if REPO is None and "google.colab" in sys.modules:
    if not os.environ.get("LTF_REPO"):
        raise RuntimeError("In Colab this notebook clones ltf from the git URL in LTF_REPO: run "
                           "`%env LTF_REPO=<git URL of ltf>` in a cell above, then this cell again.")
    REPO = Path("ltf").resolve()
    if not REPO.exists():
        subprocess.run(["git", "clone", os.environ["LTF_REPO"], str(REPO)], check=True)
        if os.environ.get("LTF_REF"):
            subprocess.run(["git", "-C", str(REPO), "checkout", os.environ["LTF_REF"]], check=True)
if REPO is None:
    raise RuntimeError("No ltf checkout found: start Jupyter inside a clone of ltf, or install ltf from "
                       "one with `pip install -e <clone>` (in Colab: set LTF_REPO).")
if installed_ltf() is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)
    sys.path.insert(0, str(REPO))  # the running kernel does not see a fresh editable install
    print("Installed ltf. If pip upgraded a package this session had already imported, restart the "
          "session and run all cells again.")
import ltf

print(f"ltf from {Path(ltf.__file__).parent}, configs from {REPO / 'configs'}")

SMOKE = os.environ.get("LTF_NOTEBOOK_SMOKE", "0") not in ("", "0")
RUNS = Path(os.environ.get("LTF_NOTEBOOK_WORKDIR") or REPO / "runs" / "notebooks")

# %% [markdown]
# ## The sweep workdir, or a tiny sweep

# %%
from ltf import report, sweep, sweep_runner

sweep_dir = Path(os.environ.get("LTF_SWEEP_DIR") or REPO / "runs" / "ablation")
if SMOKE or not (sweep_dir / sweep.SWEEP_FILE).exists():
    print(f"{'smoke mode' if SMOKE else f'{sweep_dir} holds no sweep'}: running a tiny one.")
    sweep_dir = RUNS / "02_smoke_sweep"
    tiny = sweep.load_sweep(f"{REPO / 'configs' / 'tlstm_lm.py'}:arms=lstm+lstm_noforget,seeds=2,smoke")
    # Two processes at once, one per arm, each training its 2 seeds as one vmapped program;
    # run again, finished runs are skipped.
    result = sweep_runner.run_sweep(tiny, sweep_dir, jobs=2, seeds_per_process=2)
    assert not result.failed, f"failed runs, see their logs: {result.failed}"
print(f"sweep workdir: {sweep_dir}")

# %% [markdown]
# ## The results table
#
# `write_report` (what `scripts/sweep.py --report` runs) writes results.md, results.csv and the
# figures into the sweep workdir. One row per arm: the final validation (and test) metric as
# mean ± sample std over seeds, and the wall time per run; `results.csv` holds every metric at
# full precision.

# %%
from IPython.display import Image, Markdown, display

paths = report.write_report(sweep_dir)
table = [line for line in paths["md"].read_text().splitlines() if not line.startswith("![")]
display(Markdown("\n".join(table)))

# %%
import csv

with open(paths["csv"], newline="") as f:
    rows = list(csv.DictReader(f))
print(f"results.csv: {len(rows)} rows; columns {list(rows[0])}")


def cell(value):
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


results = report.collect(sweep_dir)  # every run's config, curve, final metrics and wall time
metric = report.choose_metric(results)
columns = ["arm", "n", "seeds", "steps", "validation_loss_mean", f"validation_{metric}_mean",
           f"validation_{metric}_std", f"test_{metric}_mean", "wall_s_mean"]
columns = [c for c in columns if c in rows[0]]
display(Markdown("\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                           + ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows])))

# %% [markdown]
# ## The report's figures
#
# Validation metric against step per arm (mean over seeds, band min–max), and the final
# validation metric per arm (bar: mean, error bar: std, dots: seeds).

# %%
for path in paths.values():
    if path.suffix == ".png":
        display(Image(filename=str(path)))

# %% [markdown]
# ## Digging further: every run's training curve
#
# `report.collect` (above) read each run's config, metrics and wall time; `read_metrics` reads
# any run's `metrics.jsonl`.

# %%
import matplotlib.pyplot as plt

from ltf.writers import read_metrics

arms = list(dict.fromkeys(r.arm for r in results))  # colour: arm, line style: seed
seeds = list(dict.fromkeys(str(r.seed) for r in results))
fig, ax = plt.subplots(figsize=(7, 4))
for r in results:
    train_records = read_metrics(sweep_dir / r.name, split="train")
    ax.plot([x["step"] for x in train_records], [x[metric] for x in train_records],
            color=f"C{arms.index(r.arm)}", ls=("-", "--", ":", "-.")[seeds.index(str(r.seed)) % 4],
            label=f"{r.arm}, seed {r.seed}")
ax.set(xlabel="step", ylabel=f"training {metric}", title="every run, training windows")
ax.grid(alpha=0.3)
ax.legend(fontsize="small")
plt.show()
