"""Internal states over a CERG test stream, as in the figures of Gers, Schmidhuber & Cummins
(2000): the cell states C_t of a net without forget gates against one with them, and the forget
gates f_t that reset the memory at the end of each embedded Reber string.

  python scripts/cerg_states.py runs/cerg/cell=lstm_noforget,seed=0 runs/cerg/cell=lstm,seed=0 \\
      --out results/cerg/internal_states.png

Each run (a workdir of configs/reber.py) reads the first test stream from a zero state, never
reset, for --length symbols. Per run, the figure shows every unit's C_t over the whole stretch,
the first error (a step where some output is 0.49 or more off its target) as a red line, and
for runs with a forget gate, also f_t and C_t of the units that hold the string's embedded
symbol (T or P) over the first --zoom symbols, string starts dotted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

import jax  # noqa: E402
import numpy as np  # noqa: E402

from ltf.cells.registry import has_forget_gate  # noqa: E402
from ltf.runs import load_run  # noqa: E402
from ltf.tasks.synthetic import EVAL_SEEDS  # noqa: E402
from ltf.data.synthetic import reber  # noqa: E402
from ltf.traces import stack_traces  # noqa: E402


MEMORY_UNITS = 2  # forget gates shown: of the units that hold the embedded symbol


def memory_units(c_TxH: np.ndarray, ids_T: np.ndarray, starts_T: np.ndarray, k: int) -> np.ndarray:
    """The k units whose C_t correlates most (in absolute value) with the current string's
    embedded symbol (+1 for T, −1 for P, the string's second symbol): the memory the task needs,
    to predict the string's second-last symbol."""
    string_start = np.maximum.accumulate(np.where(starts_T, np.arange(len(ids_T)), 0))
    branch = ids_T[np.minimum(string_start + 1, len(ids_T) - 1)]
    inside = np.arange(len(ids_T)) > string_start  # from the embedded symbol on
    sign = np.where(branch == reber.SYMBOLS.index("T"), 1.0, -1.0)[inside]
    c = c_TxH[inside]
    c = (c - c.mean(0)) / (c.std(0) + 1e-8)
    corr = np.abs(c.T @ (sign - sign.mean())) / (len(sign) * (sign.std() + 1e-8))
    return np.argsort(corr)[-k:][::-1]


def test_stream(length: int) -> dict:
    """The first test stream (seed EVAL_SEEDS["test"], row 0), `length` symbols, with its string
    starts as `reset_T` (only marked in the figure; the nets read it without a reset)."""
    return next(reber.erg_batches(1, length, seed=EVAL_SEEDS["test"]))


def run_stream(workdir: str, stream: dict) -> dict:
    run = load_run(workdir)
    if run.config.task.name not in ("cerg", "erg"):
        raise SystemExit(f"{workdir}: task.name is {run.config.task.name!r}; give runs of configs/reber.py.")
    model = run.task.model
    inputs, dt, mask = stream["inputs"], stream["dt"], stream["mask"]
    traces = stack_traces(model.stack, run.params["stack"], inputs, dt, mask, layer=0)
    outputs, _ = jax.jit(model.apply)(run.params, inputs, dt, mask)
    correct = np.asarray(reber.step_correct(np.asarray(jax.nn.sigmoid(outputs)), stream["targets"]))[0]
    errors = np.flatnonzero(~correct)
    c_TxH = np.asarray(traces.c[0])
    ids_T = np.argmax(inputs[0], axis=-1)
    return {"label": f"{run.config.model.cell} ({Path(workdir).name})", "c": c_TxH,
            "f": np.asarray(traces.gates["f"][0]) if has_forget_gate(model.stack.cells[0]) else None,
            "memory_units": memory_units(c_TxH, ids_T, stream["reset_T"][0], MEMORY_UNITS),
            "first_error": int(errors[0]) if errors.size else None}


def plot(runs: list[dict], starts: np.ndarray, zoom: int, out: Path) -> None:
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot

    panels = [(r, "c") for r in runs] + [(r, "f") for r in runs if r["f"] is not None]
    fig = Figure(figsize=(11, 2.4 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    start_times = np.flatnonzero(starts)
    for ax, (r, what) in zip(axes, panels):
        if what == "c":
            ax.plot(r["c"], lw=0.7)
            ax.set_ylabel("cell state $C_t$")
            ax.set_title(f"{r['label']}: every unit's $C_t$, stream read from a zero state, never reset",
                         fontsize=10)
            if r["first_error"] is not None:
                ax.axvline(r["first_error"], color="red", lw=1.2, label=f"first error (symbol {r['first_error']:,})")
                ax.legend(loc="upper left", fontsize=8)
            else:
                ax.text(0.01, 0.9, "no error in this stretch", transform=ax.transAxes, fontsize=8)
        else:
            twin = ax.twinx()
            for u, color in zip(r["memory_units"], ("C0", "C1")):
                ax.plot(r["f"][:zoom, u], lw=1.3, color=color, label=f"$f_t$, unit {u}")
                twin.plot(r["c"][:zoom, u], lw=1.0, ls="--", color=color, label=f"$C_t$, unit {u}")
            ax.set_ylim(-0.05, 1.05)
            ax.set_ylabel("forget gate $f_t$ (solid)")
            twin.set_ylabel("cell state $C_t$ (dashed)")
            lines = ax.get_lines() + twin.get_lines()
            ax.legend(lines, [line.get_label() for line in lines], loc="lower left", fontsize=8, ncol=len(lines))
            ax.set_title(f"{r['label']}: the {len(r['memory_units'])} units whose $C_t$ follows the string's "
                         f"embedded symbol (T or P) most closely, first {zoom} symbols; dotted: string starts",
                         fontsize=10)
            for t in start_times[start_times < zoom]:
                ax.axvline(t, color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("symbol")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="workdirs of configs/reber.py runs (one seed's directory each)")
    parser.add_argument("--length", type=int, default=3000, help="symbols of the test stream to read")
    parser.add_argument("--zoom", type=int, default=120, help="symbols shown in the forget-gate panels")
    parser.add_argument("--out", type=Path, default=Path("cerg_states.png"))
    args = parser.parse_args()
    if args.length < 1 or not 1 <= args.zoom <= args.length:
        parser.error(f"--length {args.length}, --zoom {args.zoom}: need 1 <= zoom <= length")
    stream = test_stream(args.length)
    runs = [run_stream(w, stream) for w in args.runs]
    plot(runs, stream["reset_T"][0], args.zoom, args.out)
    for r in runs:
        err = "none" if r["first_error"] is None else f"{r['first_error']:,}"
        print(f"{r['label']}: first error at symbol {err}; max |C_t| {np.abs(r['c']).max():.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
