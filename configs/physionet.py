"""In-hospital mortality on PhysioNet/CinC Challenge 2012 (ltf.data.series.physionet): 37 variables
observed at irregular times in the first 48 h of an ICU stay; AUROC and AUPRC.

  python scripts/train.py --config configs/physionet.py --config.task.data_dir=PATH/TO/physionet2012
  python scripts/train.py --config configs/physionet.py:cell=time_aware,dt=per_variable \\
      --config.task.data_dir=...   # Δt per variable (37 gaps) into the time-aware gates

data_dir holds set-a.tar.gz (or the extracted set-a/) and Outcomes-a.txt from
https://physionet.org/content/challenge-2012/1.0.0/ ; the loader says what is missing. The first
run prepares the folder as the TFDS dataset physionet2012 in the ltf cache (~8 s for set A; again
only when the files change) and batches come from grain, their position saved with each
checkpoint. Set A is split train/validation/test by task.protocol (ltf.data.series.splits,
stratified, task.split_seed): "ltf" 80/10/10 (default), "published" 20% test then 80/20
train/validation (Rubanova et al. 2019; Shukla & Marlin 2021), "cv" GRU-D's 5 folds, fold
task.fold as test; task.extra_sets=("b", "c") adds the other sets as evaluation splits. The
checkpoint kept as best is the one with the highest validation AUROC, and test (and the extra
sets) are scored with it (train.select_by / test_at). Published AUROC (Rubanova et al. 2019,
Table 6): RNN 0.787, RNN-Decay 0.807, GRU-D 0.818, ODE-RNN 0.833, Latent ODE 0.829; GRU-D's own
5-fold CV (Che et al. 2018): 0.8424 ± 0.012; mTAND-Full (Shukla & Marlin 2021): 0.858.

GRU-D (Che et al. 2018) as its paper runs it: `configs/physionet.py:grud` = cell=grud (the GRU with
the hidden decay over the 37 per-variable gaps: dt=per_variable, d_time=37), the model's input
decay (model.input_decay) and the observation mask as input ([x̂_t, m_t]).

Choices (after the colon): cell=, attention=, window=W, chrono, dt=event|per_variable, grud,
protocol=ltf|published|cv, fold=K, static (the stay's static features beside h in the head),
summaries (the logistic-regression baseline's 193 per-stay summaries beside h in the head: a
"wide and deep" model, the linear baseline and the recurrent net trained as one),
residual=logistic (the logit is the fitted logistic-regression baseline's plus the model's
correction to it), smoke.
"""

import ml_collections

from ltf.config_lib import (cell_arms, opt_config, parallel_config,
                            parse_arg, sequence_model_config, stack_inputs, train_config)

# The smoke run needs the real files: tests pass SHARED_DATA/<this> as task.data_dir, or skip.
SMOKE_DATA = {"task.data_dir": "physionet2012"}


def get_config(arg=None):
    choices = parse_arg(arg, cell="lstm", attention="", window=0, chrono=False, dt="event", grud=False,
                        protocol="ltf", fold=0, static=False, summaries=False,
                        residual="none", smoke=False)
    if choices.grud:  # GRU-D: its cell, its Δt (the gaps per variable) and its input decay
        choices.update(cell="grud", dt="per_variable")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ml_collections.ConfigDict(dict(
        name="physionet", data_dir=ml_collections.config_dict.placeholder(str), extra_sets=(), split_seed=0,
        dt=choices.dt, protocol=choices.protocol, fold=choices.fold,
        use_static=choices.static,  # age, gender, height, weight, ICU type (+ observed flags) into the head
        # last, mean, min, max, log1p(count) of each variable + the static fields, standardised
        # with the training split's statistics (ltf.data.series.physionet_summaries), into the head
        use_summaries=choices.summaries,
        residual=choices.residual,  # "logistic": learn the correction to the summaries' logistic regression
        winsorise=0.0,  # > 0: clip each variable to the training split's q, 1 - q quantiles (entry errors)
    ))
    c.data = ml_collections.ConfigDict(dict(seq_len=202, batch_size=64, eval_batch_size=128))
    c.model = sequence_model_config(ml_collections.ConfigDict({**choices, "chrono_t_max": 100.0}),
                                    head="last", d_hidden=64, use_obs_mask=True, input_decay=choices.grud)
    if choices.dt == "per_variable":
        c.model.cell_options.d_time = 37
    c.opt = opt_config()
    # 600 steps = 12 epochs of 3,200 stays: an LSTM of 64 units was seen to peak on validation
    # AUROC near 250-500 steps and overfit by 1,500
    c.train = train_config(steps=600, eval_every=100, log_every=50,
                           select_by="auroc", select_mode="max", test_at="best")
    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:
        c.data.update(batch_size=8, eval_batch_size=8)
        c.model.d_hidden = 8
        c.train.update(steps=4, log_every=2, eval_every=2, checkpoint_every=2, eval_max_batches=2)
        c.opt.warmup_steps = 1
    return c


ARMS = cell_arms("lstm", "adaptive", "time_aware", "tlstm", attention=True, attention_window=64)
# The time-aware gates fed the time since each variable's last observation (37 gaps), not since the last event.
ARMS["time_aware_dt_per_variable"] = {"model.cell": "time_aware", "task.dt": "per_variable",
                                      "model.cell_options.d_time": 37}
# GRU-D (Che et al. 2018): hidden decay over the 37 per-variable gaps, input decay, [x̂_t, m_t] in.
ARMS["grud"] = {"model.cell": "grud", "task.dt": "per_variable", "model.cell_options.d_time": 37,
                "model.input_decay": True}
# Phased LSTM with its periods drawn within a stay's 48 hours (1 to 48 h, log-uniform), not the
# cell's default e..e^6 time units, most of which would leave a unit closed for the whole stay;
# open half of each period (r_on = 0.5): with the paper's 0.05 a stay's few dozen events mostly
# fall in closed phases (published split, static features, 1,200 steps, 3 seeds: validation
# AUROC 0.742 at r_on = 0.05, 0.801 at 0.5; results/README.md).
ARMS["phased"] = {"model.cell": "phased", "model.cell_options.period_init_min": 1.0,
                  "model.cell_options.period_init_max": 48.0, "model.cell_options.r_on_init": 0.5}
ARMS["ctlstm"] = {"model.cell": "ctlstm"}  # the continuous-time LSTM, relaxing over each gap (hours)


def get_sweep(arg=None):
    """The nine arms x seeds (default 3); with protocol=cv, x the 5 folds as well (fold=0..4,
    one seed by default, as GRU-D reports mean ± std over folds). The gated linear recurrences of
    ltf.config_lib.MODERN_ARMS are arms too when named (arms=lstm+linear_decay+...), each at
    lstm's parameter count:

      python scripts/sweep.py --config configs/physionet.py --set task.data_dir=PATH/TO/physionet2012 \\
          --workdir runs/physionet --seeds_per_process 3 --report
      python scripts/sweep.py --config configs/physionet.py:protocol=cv,seeds=1 --set task.data_dir=... \\
          --workdir runs/physionet_cv --report
    """
    from ltf.data.series.splits import N_FOLDS
    from ltf.sweep import arms_sweep

    items = [x for x in (arg or "").split(",") if x]
    if "protocol=cv" not in items:
        return arms_sweep(arg, ARMS, get_config, seeds=3, matched_inputs=_stack_inputs)
    if any(x.startswith("fold=") for x in items):
        raise ValueError("sweep choice fold=: with protocol=cv the sweep runs every fold; drop fold=.")
    runs = arms_sweep(arg, ARMS, get_config, seeds=1, matched_inputs=_stack_inputs)
    # the folds of an arm are one table row (mean ± std over folds), as the seeds are
    return [{**run, "task.fold": fold, "replicates": ["task.fold"]} for run in runs for fold in range(N_FOLDS)]


def _stack_inputs(config) -> int:
    """The 37 variables (ltf.tasks.series.PhysioNet), beside their observation mask when the model reads it."""
    return stack_inputs(config.model, 37)
