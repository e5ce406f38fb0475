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
# # Forgetting: the gates and cell states of `lstm` and `lstm_noforget`
#
# The forget-gate LSTM (Gers, Schmidhuber & Cummins 2000) updates its memory as
# C_t = f_t ⊙ C_{t-1} + i_t ⊙ g_t; the 1997 LSTM has no forget gate, C_t = C_{t-1} + i_t ⊙ g_t,
# which is the same update with f ≡ 1. On a continual stream, with no resets from outside, the
# 1997 cell can only add to its memory: C drifts away and h = o ⊙ tanh(C) saturates, while the
# forget gate lets `lstm` reset and keep C bounded.
#
# This notebook trains both briefly on Shakespeare (`configs/tlstm_lm.py`, one layer), runs each
# over a long stretch of held-out text from a zero state, and draws what `ltf.traces` returns:
# every gate, C and h at every unit and step. `ltf.traces` recomputes the gates from each cell's
# own parameters and equations; tests/test_traces.py checks that the C and h it forms from them
# equal the model's forward pass.
#
# `LTF_NOTEBOOK_SMOKE=1` trains for a few steps only (the test suite does this); the curves then
# show mostly the untrained cells, and the drift of `lstm_noforget` all the same.

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
# ## Train both arms
#
# One recurrent layer; the same config, seed and data for both, only the cell differs. Run again,
# the finished runs are found in their workdirs and not retrained.

# %%
from ltf import config_lib, train, traces

ARMS = ("lstm", "lstm_noforget")


def arm_config(cell):
    config = config_lib.load_config(f"{REPO / 'configs' / 'tlstm_lm.py'}:cell={cell}" + (",smoke" if SMOKE else ""))
    config.model.n_layers = 1
    if not SMOKE:  # 128 units, 1,000 steps: 1-2 minutes per arm on 2 CPU cores
        config.model.update(d_hidden=128, dropout=0.0)
        config.train.update(steps=1000, log_every=50, eval_every=250, checkpoint_every=250, eval_max_batches=20)
    return config


workdirs = {cell: RUNS / (f"03_forgetting-{cell}" + ("-smoke" if SMOKE else "")) for cell in ARMS}
for cell in ARMS:
    final = train.train_and_evaluate(arm_config(cell), workdirs[cell])
    print(f"{cell}: validation bpc {final['validation']['bpc']:.3f}\n")

# %% [markdown]
# ## Traces over a stream of held-out text
#
# `traces.language_model_traces(model, params, tokens_BxT, layer=0)` runs the layers below
# `layer` as the model does and returns a `Traces` of the gates i, f, g, o, the cell states C and
# the outputs h of that layer, each batch × time × units. `lstm_noforget` reports f as ones.

# %%
import jax.numpy as jnp
import numpy as np

from ltf.data.corpora import load_lm_corpus

T = 300 if SMOKE else 2000
corpus = load_lm_corpus(arm_config("lstm").data.corpus)
tokens = corpus.splits["validation"][:T]
print(repr(corpus.vocab.decode(tokens[:200].tolist())), "...")

runs = {}
for cell in ARMS:
    model, params, vocab = traces.load_language_model(workdirs[cell])
    assert vocab.tokens == corpus.vocab.tokens  # the run's vocabulary is the corpus's
    tr = traces.language_model_traces(model, params, jnp.asarray(tokens[None], jnp.int32), layer=0)
    runs[cell] = {k: np.asarray(v[0]) for k, v in (*tr.gates.items(), ("c", tr.c), ("h", tr.h))}  # T x H each

f_noforget = runs["lstm_noforget"]["f"]
print(f"lstm_noforget: f == 1 at every unit and step: {bool(np.all(f_noforget == 1.0))}")
for cell, r in runs.items():
    late = slice(int(0.9 * T), T)
    print(f"{cell:>13}: f in [{r['f'].min():.3f}, {r['f'].max():.3f}], "
          f"mean |C| over the last 10% of the stream {np.abs(r['c'][late]).mean():7.3f}, max |C| {np.abs(r['c']).max():7.3f}, "
          f"tanh(C) saturated (|tanh C| > 0.99) at {100 * np.mean(np.abs(np.tanh(r['c'])) > 0.99):.0f}% of unit-steps")

# %% [markdown]
# ## The forget gate, units × time
#
# `lstm`'s units sorted by their mean forget gate. Its f moves with the text: where it drops, the unit
# lets go of what it held. `lstm_noforget` has none: its f is the constant 1 of
# C_t = 1 ⊙ C_{t-1} + i ⊙ g.

# %%
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

by_mean_f = np.argsort(runs["lstm"]["f"].mean(0))
fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True, layout="constrained")
for ax, cell in zip(axes, ARMS):
    units = by_mean_f if cell == "lstm" else slice(None)
    im = ax.imshow(runs[cell]["f"][:, units].T, aspect="auto", interpolation="nearest", vmin=0, vmax=1,
                   cmap="viridis")
    ax.set(ylabel="unit", title=f"{cell}: forget gate f")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
axes[-1].set_xlabel("step (character)")
fig.colorbar(im, ax=axes, label="f")
plt.show()

# %% [markdown]
# ## Cell state C and output h, units × time
#
# Units sorted by their mean C; each C panel has its own colour scale (in its title). `lstm`'s C
# levels off, and drops where many of its forget gates close at once; `lstm_noforget`'s C keeps
# its sign and grows all along the stream, and its h = o ⊙ tanh(C) saturates at ±o.

# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 5.5), sharex=True, layout="constrained")
for row, cell in zip(axes, ARMS):
    units = np.argsort(runs[cell]["c"].mean(0))
    c, h = runs[cell]["c"][:, units].T, runs[cell]["h"][:, units].T
    scale = np.abs(c).max()
    im_c = row[0].imshow(c, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-scale, vmax=scale)
    row[0].set(ylabel="unit", title=f"{cell}: cell state C (colour scale ±{scale:.1f})")
    fig.colorbar(im_c, ax=row[0])
    im_h = row[1].imshow(h, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-1, vmax=1)
    row[1].set(title=f"{cell}: output h")
    for ax in row:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(im_h, ax=row[1])
for ax in axes[-1]:
    ax.set_xlabel("step (character)")
plt.show()

# %% [markdown]
# ## How large the memory gets
#
# Mean and largest |C| over the units at every step, on one (log) scale for both cells.

# %%
fig, ax = plt.subplots(figsize=(9, 4))
for k, cell in enumerate(ARMS):
    abs_c = np.abs(runs[cell]["c"])
    ax.plot(abs_c.mean(1), color=f"C{k}", label=f"{cell}: mean over units")
    ax.plot(abs_c.max(1), color=f"C{k}", ls=":", label=f"{cell}: max over units")
ax.set(yscale="log", xlabel="step (character)", ylabel="|C|", title="cell-state magnitude along the stream")
ax.grid(alpha=0.3)
ax.legend(fontsize="small")
plt.show()

# %% [markdown]
# ## Where `lstm` forgets most
#
# The steps where its forget gate, averaged over the units, is lowest, with the text up to them.
# Trained in the default setting, these are the blank lines that close a speech, a heading or a
# stage direction: on reading the second newline the model clears much of its memory before what
# comes next, mostly a speaker's name. (The smoke setting barely trains; its list means nothing.)

# %%
text = corpus.vocab.decode(tokens.tolist())
mean_f = runs["lstm"]["f"].mean(1)
for t in np.argsort(mean_f)[:8]:
    print(f"step {t:5d}  mean f {mean_f[t]:.3f}  {text[max(0, t - 30):t + 1]!r} -> {text[t + 1:t + 6]!r}")

# %% [markdown]
# ## Close up: the gates along the text
#
# The first 100 characters, with the text along the axis: the forget gate of every unit of `lstm`
# and, below, its input gate i (how much of g_t it writes).

# %%
n = min(100, T)
chars = ["⏎" if ch == "\n" else "␣" if ch == " " else ch for ch in text[:n]]
fig, axes = plt.subplots(2, 1, figsize=(14, 5), sharex=True, layout="constrained")
for ax, gate in zip(axes, ("f", "i")):
    im = ax.imshow(runs["lstm"][gate][:n, by_mean_f].T, aspect="auto", interpolation="nearest", vmin=0, vmax=1,
                   cmap="viridis")
    ax.set(ylabel="unit", title=f"lstm: {'forget' if gate == 'f' else 'input'} gate {gate}")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(im, ax=ax)
axes[-1].set_xticks(range(n), chars, fontsize=7)
plt.show()
