"""The continual embedded Reber grammar (CERG) of Gers, Schmidhuber & Cummins (2000), "Learning
to Forget: Continual Prediction with LSTM": one endless stream of embedded Reber strings, the
state never reset; at every symbol the net predicts the set of possible next symbols.

  python scripts/train.py --config configs/reber.py                      # lstm
  python scripts/train.py --config configs/reber.py:cell=lstm_noforget   # the 1997 LSTM: fails
  python scripts/train.py --config configs/reber.py:cell=lstm_noforget --config.task.name=erg  # reset
  python scripts/train.py --config configs/reber.py:smoke                # seconds

Evaluation follows the paper: data.eval_batch_size streams (10) of data.eval_batches x data.seq_len
symbols (100,000), error_free_length = the symbols before the first error (a step is correct
when every output is within 0.49 of the target) and perfect = the fraction of error-free
streams. Training is modern: Adam on windows of data.seq_len symbols with the state carried
across windows (truncated BPTT), not the paper's online RTRL-style updates, on streams that
restart from a zero state every task.restart_every windows.

Choices (after the colon): cell=..., attention=..., window=W, chrono, lr_decay, smoke.

`lr_decay`: the protocol for the paper's best row ("forget gates with learning-rate decay", 62%
perfect): 10,000 windows (16M symbols) instead of 3,000, the cosine schedule taken down to 1% of
the rate instead of 10%, and the checkpoint kept (and tested) the one with the longest
error-free validation streams, evaluated every 1,000 windows. Against the paper: it decays the
rate of its online updates and stops training when a net passes its test, where this decays
Adam's rate smoothly and keeps the best checkpoint; both end training on a net that makes no
errors rather than on the last update.
"""

import ml_collections

from ltf.config_lib import opt_config, parallel_config, parse_arg, sequence_model_config, stack_inputs, train_config

STREAM_LENGTH = 100_000  # symbols per test stream (the paper's)


def get_config(arg=None):
    choices = parse_arg(arg, cell="lstm", attention="", window=0, chrono=False, lr_decay=False, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Training streams restart (zero state) every 10 windows = 1,000 symbols, as the paper's end
    # at the first error and start anew; a test stream starts from zeros and runs 100,000.
    c.task = ml_collections.ConfigDict(dict(name="cerg", restart_every=10))
    seq_len = 100
    c.data = ml_collections.ConfigDict(dict(
        seq_len=seq_len, batch_size=16, eval_batch_size=10, eval_batches=STREAM_LENGTH // seq_len))
    # chrono T_max: an ERG string is ~ 10 symbols; the state should last a few strings, not forever.
    c.model = sequence_model_config(ml_collections.ConfigDict({**choices, "chrono_t_max": 30.0}),
                                    head="per_step", d_hidden=16)
    c.opt = opt_config(lr=5e-3)
    c.train = train_config(steps=3000, eval_every=1000)
    if choices.lr_decay:  # the paper's learning-rate-decay row (see the docstring)
        c.opt.end_lr_factor = 0.01
        c.train.update(steps=10_000, select_by="error_free_length", select_mode="max", test_at="best")
    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:
        c.data.update(seq_len=20, batch_size=4, eval_batch_size=2, eval_batches=3)
        c.model.d_hidden = 8
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3)
        c.opt.warmup_steps = 1
    return c


# The rows of the paper's Table 2 with ltf's cells, each with a forget gate also with chrono:
# the 1997 LSTM with the external reset at string starts (task erg) and without (cerg), then the
# cells that can learn to reset themselves.
CELLS = ("lstm_noforget", "lstm", "adaptive", "time_aware")
ARMS = {"lstm_noforget_reset": {"task.name": "erg", "model.cell": "lstm_noforget"}}
ARMS.update({f"{cell}{'_chrono' if chrono else ''}": {
    "model.cell": cell, **({"model.cell_options.forget_init": "chrono"} if chrono else {})}
    for cell in CELLS for chrono in (False, True) if not (chrono and cell == "lstm_noforget")})


def get_sweep(arg=None):
    """The CERG table: every arm x seeds (default 30), run several seeds per process; the gated
    linear recurrences of ltf.config_lib.MODERN_ARMS are arms too when named, at lstm's parameter count:

      python scripts/sweep.py --config configs/reber.py --workdir runs/cerg --seeds_per_process 10 --report
    """
    from ltf.sweep import arms_sweep

    # a one-hot of the grammar's 7 symbols in (ltf.tasks.synthetic.CERG)
    return arms_sweep(arg, ARMS, get_config, seeds=30, matched_inputs=lambda config: stack_inputs(config.model, 7))
