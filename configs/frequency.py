"""Frequency discrimination (Neil, Pfeiffer & Liu 2016, "Phased LSTM", NIPS): is a sine wave's
period in [5, 6] ms? Sampled regularly (1 ms), at high resolution (0.1 ms) or asynchronously
(15 to 125 points at random times); the inputs are (value, Δt) and every cell also gets Δt
(inputs=value: the value alone, as the authors' code feeds its Phased LSTM; inputs=value_time:
the value and the absolute time, as it feeds its LSTM).

  python scripts/train.py --config configs/frequency.py:sampling=async,cell=time_aware
  python scripts/train.py --config configs/frequency.py:sampling=async,cell=phased,paper   # 70 epochs
  python scripts/train.py --config configs/frequency.py:sampling=async,cell=phased,paper,inputs=value
  python scripts/train.py --config configs/frequency.py:smoke                # seconds

The paper's setting: 110 units, Adam 1e-3, batch 32, 70 epochs, 5 seeds; published accuracy
(LSTM / Phased LSTM): regular 89.3 / 99.3, high resolution 51.7 / 99.6, asynchronous 69.0 / 97.9.

Choices (after the colon): sampling=regular|high_res|async, inputs=value_dt|value|value_time
(ltf.data.synthetic.frequency.INPUTS), cell=..., attention=..., window=W, chrono, paper (the
paper's budget: 70 epochs of 5,000 sequences, PAPER_STEPS steps of 32; the default is 3,000
steps), smoke.
"""

import ml_collections

from ltf.config_lib import (cell_arms, opt_config, parallel_config,
                            parse_arg, sequence_model_config, stack_inputs, train_config)
from ltf.data.synthetic.frequency import input_width, max_steps

PAPER_STEPS = -(-70 * 5000 // 32)  # 70 epochs of 5,000 sequences in batches of 32: 10,938 steps


def get_config(arg=None):
    choices = parse_arg(arg, sampling="regular", inputs="value_dt", cell="lstm", attention="", window=0,
                        chrono=False, paper=False, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ml_collections.ConfigDict(dict(name="frequency", sampling=choices.sampling, inputs=choices.inputs,
                                            balanced=True))
    steps = max_steps(choices.sampling)
    c.data = ml_collections.ConfigDict(dict(
        seq_len=steps,  # every batch is padded to the sampling's longest sequence (one compile)
        batch_size=32, eval_batch_size=100, eval_batches=20))
    c.model = sequence_model_config(ml_collections.ConfigDict({**choices, "chrono_t_max": float(steps)}),
                                    head="last", d_hidden=110)
    c.opt = opt_config(schedule="constant", warmup_steps=0)  # the paper: Adam 1e-3
    c.train = train_config(steps=PAPER_STEPS if choices.paper else 3000, eval_every=1000 if choices.paper else 500)
    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:
        c.data.update(batch_size=4, eval_batch_size=4, eval_batches=2)
        c.model.d_hidden = 8
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3)
    return c


ARMS = cell_arms("lstm", "time_aware", "tlstm", attention=True, attention_window=32)
# Phased LSTM as its authors' frequency-task code sets it up (public_plstm/freq_task.py, plstm.py):
# periods exp U[1, 3] ms (e to e³ ≈ 20 ms), r_on 0.05, and τ, s, r_on trained as themselves
# (time_params="raw": Adam moves r_on 20× faster than through its logit). "phased_log" is the
# same arm with ltf's default log τ and logit r_on (what the results before commit d6ffc3f ran).
ARMS["phased"] = {"model.cell": "phased", "model.cell_options.period_init_max": 20.0,
                  "model.cell_options.time_params": "raw"}
ARMS["phased_log"] = {"model.cell": "phased", "model.cell_options.period_init_max": 20.0}
# ... and initialised as that code initialises it (Lasagne's defaults): W_x, W_h and the peepholes
# ~ N(0, 0.1²), forget-gate bias 0 (its input-gate bias of -0.1 is left at ltf's 0).
ARMS["phased_authors_init"] = {**ARMS["phased"], "model.cell_options.weight_init": "normal",
                               "model.cell_options.weight_std": 0.1, "model.cell_options.forget_bias": 0.0}
# The paper's LSTM as its authors' code feeds it: each value with its absolute time, no Δt.
ARMS["lstm_value_time"] = {"model.cell": "lstm", "task.inputs": "value_time"}


def get_sweep(arg=None):
    """The arms (phased: the paper's own cell, reading the batch's absolute times) x seeds
    (default 5, as the paper); choose the sampling with sampling=...; the gated linear recurrences of
    ltf.config_lib.MODERN_ARMS are arms too when named, each at lstm's parameter count:

      python scripts/sweep.py --config configs/frequency.py:sampling=async --workdir runs/freq_async \\
          --seeds_per_process 5 --report
    """
    from ltf.sweep import arms_sweep

    return arms_sweep(arg, ARMS, get_config, seeds=5,
                      matched_inputs=lambda config: stack_inputs(config.model, input_width(config.task.inputs)))
