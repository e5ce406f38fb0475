"""Long time lags (Hochreiter & Schmidhuber 1997): the adding problem and temporal order, as
checks of every cell at lengths 100 to 1,000, with chrono initialisation on and off.

  python scripts/train.py --config configs/long_lag.py                          # adding, T = 100
  python scripts/train.py --config configs/long_lag.py:task=temporal_order,seq_len=500,chrono
  python scripts/train.py --config configs/long_lag.py:smoke                    # seconds

Choices (after the colon): task=adding|temporal_order, seq_len=T (>= 20), num_relevant=2|3
(temporal order: 4 or 8 classes), cell=..., attention=..., window=W, chrono (forget-gate
bias from Tallec & Ollivier 2018 with T_max = seq_len), smoke. The data are ltf.data.synthetic.long_lag
(see its docstring for the protocol); a run is scored on fixed validation and test sets.
"""

import ml_collections

from ltf.config_lib import opt_config, parallel_config, parse_arg, sequence_model_config, train_config


def get_config(arg=None):
    choices = parse_arg(arg, task="adding", seq_len=100, num_relevant=2, cell="lstm", attention="", window=0,
                        chrono=False, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ml_collections.ConfigDict(dict(
        name=choices.task,
        scaled=True,  # adding: target 0.5 + (X1 + X2) / 4, as in the paper
        variable_length=True,  # length uniform in [T, T + T/10], as in the paper
        num_relevant=choices.num_relevant,  # temporal order: 2 (Exp. 6a) or 3 (Exp. 6b) symbols
    ))
    c.data = ml_collections.ConfigDict(dict(
        seq_len=choices.seq_len, batch_size=32, eval_batch_size=100, eval_batches=20))
    c.model = sequence_model_config(ml_collections.ConfigDict({**choices, "chrono_t_max": choices.seq_len}),
                                    head="last", d_hidden=64)
    c.opt = opt_config()
    c.train = train_config(steps=5000, eval_every=1000)
    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:
        c.data.update(seq_len=max(20, min(choices.seq_len, 24)), batch_size=4, eval_batch_size=4, eval_batches=2)
        c.model.d_hidden = 8
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3)
        c.opt.warmup_steps = 1
    return c


CELLS = ("lstm_noforget", "lstm", "adaptive", "time_aware", "tlstm")
ARMS = {f"{cell}{'_chrono' if chrono else ''}": {
    "model.cell": cell, **({"model.cell_options.forget_init": "chrono"} if chrono else {})}
    for cell in CELLS for chrono in (False, True) if not (chrono and cell == "lstm_noforget")}


def get_sweep(arg=None):
    """Every cell with and without chrono (lstm_noforget has no forget gate to initialise) x
    seeds (default 3); other choices (task=, seq_len=, smoke) go to get_config. chrono_t_max
    is the config's seq_len. The gated linear recurrences of ltf.config_lib.MODERN_ARMS (rglru,
    linear_decay, mlstm, griffin, residual_lstm, residual_mlstm) are arms too when named, each at lstm's
    parameter count:

      python scripts/sweep.py --config configs/long_lag.py:seq_len=1000,arms=lstm+lstm_chrono+rglru+mlstm \
          --workdir runs/adding1000 --report

      python scripts/sweep.py --config configs/long_lag.py:task=adding,seq_len=200 --workdir runs/adding200 \\
          --seeds_per_process 3 --report
    """
    from ltf.sweep import arms_sweep

    return arms_sweep(arg, ARMS, get_config, seeds=3, matched_inputs=_stack_inputs)


def _stack_inputs(config) -> int:
    """The width of the inputs (ltf.tasks.synthetic): adding reads (value, marker), temporal order
    a one-hot of 8 symbols."""
    return 2 if config.task.name == "adding" else 8
