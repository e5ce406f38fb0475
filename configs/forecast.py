"""Forecasting a time series, regular or irregularly sampled: the next H values from a window of
L steps (ltf.data.series). Default: half-hourly electricity demand (`taylor`, 4,032 points, from
pmdarima): a week in, a day out.

  python scripts/train.py --config configs/forecast.py                          # taylor, regular
  python scripts/train.py --config configs/forecast.py:kind=subset,keep=0.3,cell=time_aware
  python scripts/train.py --config configs/forecast.py:series=sunspots_monthly,L=264,H=12
  python scripts/train.py --config configs/forecast.py:smoke                    # seconds

Choices (after the colon): series=NAME (ltf.data.series.regular.SERIES), kind=regular|subset|poisson (the
irregular versions: keep a fraction `keep` of the points, or observe at Poisson times of rate
`rate` per step; drawn once from task.data_seed, the same for every run), L=, H=, cell=,
attention=, window=W, chrono, residual=none|seasonal_naive|seasonal_change, window_norm, loss=mse|mae,
smoke. The model sees values, the observation mask and Δt. `residual=seasonal_naive` makes the model predict
the correction to the seasonal naive forecast (`seasonal_change`: to the seasonal naive plus the
last season's change, ltf.baselines); `window_norm` standardises each window by its own
mean and std (ltf.tasks.series.Forecast): what forecasters do, for every arm alike. `loss=mae`
trains on (and selects the checkpoint by) the absolute error that the tables rank by.
Splits are chronological (70/10/20); normalisation uses the training part only; errors
(mse, mae) are reported on the original scale.
"""

import ml_collections

from ltf.config_lib import (cell_arms, opt_config, parallel_config,
                            parse_arg, sequence_model_config, stack_inputs, train_config)


def get_config(arg=None):
    choices = parse_arg(arg, series="taylor", kind="regular", keep=0.3, rate=0.3, L=336, H=48, cell="lstm",
                        attention="", window=0, chrono=False, residual="none", window_norm=False, loss="mse",
                        smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ml_collections.ConfigDict(dict(
        name="forecast", series=choices.series, kind=choices.kind, keep=choices.keep, rate=choices.rate,
        data_seed=0, L=choices.L, H=choices.H, fractions=(0.7, 0.1, 0.2),
        # Poisson times fall between grid steps: one input step per observation (ltf.data.series.windows)
        layout="events" if choices.kind == "poisson" else "grid",
        residual=choices.residual, window_norm=choices.window_norm, loss=choices.loss,
    ))
    c.data = ml_collections.ConfigDict(dict(seq_len=choices.L, batch_size=32, eval_batch_size=64))
    c.model = sequence_model_config(ml_collections.ConfigDict({**choices, "chrono_t_max": float(choices.L)}),
                                    head="last", d_hidden=64, use_obs_mask=True)
    c.opt = opt_config()
    c.train = train_config(steps=3000, eval_every=500, test_at="best")  # test at the best validation loss
    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:  # nile has no season: the residual's smoke run forecasts elnino (12 months)
        c.task.update(series="elnino" if choices.residual != "none" else "nile", L=8, H=2)
        c.data.update(seq_len=8, batch_size=4, eval_batch_size=4)
        c.model.d_hidden = 8
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3, eval_max_batches=2)
        c.opt.warmup_steps = 1
    return c


ARMS = cell_arms("lstm", "adaptive", "time_aware", "tlstm", attention=True, attention_window=64)
ARMS.update(cell_arms("phased", "ctlstm"))  # phased reads the windows' times (grid steps)
# GRU-D: the hidden decay and the input decay over the one variable's gap since it was last seen
ARMS["grud"] = {"model.cell": "grud", "model.input_decay": True}


def get_sweep(arg=None):
    """The eight arms x seeds (default 3); kind=... picks the regular or irregular version. The gated
    linear recurrences of ltf.config_lib.MODERN_ARMS are arms too when named (arms=lstm+linear_decay+...),
    each at lstm's parameter count:

      python scripts/sweep.py --config configs/forecast.py:kind=subset --workdir runs/taylor_subset \\
          --seeds_per_process 3 --report
    """
    from ltf.sweep import arms_sweep

    # one series in, beside its observation mask: the stack reads 2 inputs per step
    return arms_sweep(arg, ARMS, get_config, seeds=3, matched_inputs=lambda config: stack_inputs(config.model, 1))
