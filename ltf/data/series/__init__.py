"""Time-series data: regular series from PyPI packages, irregular versions, PhysioNet 2012.

Forecasting (numpy batches with inputs, mask, dt, targets and loc/scale to undo normalisation):

    series = load_series("taylor")                          # regular.py: SERIES
    obs = make_irregular(series, "subset", keep=0.3, seed=0)  # irregular.py: or "poisson"
    data = make_windows(obs, L=96, H=48)                    # windows.py: splits, normaliser
    batch = next(data.batches("train", 32))
    baselines.forecast_baselines(data, series.season)       # ltf.baselines: last value, seasonal naive (+ change)

Classification, PhysioNet/CinC 2012 in-hospital mortality:

    data = load_physionet("../shared/data/physionet2012", extra_sets=("b",))
    batch = next(data.batches("train", 64))                 # inputs [B,T,37], dt_var, static, ...
    baselines.physionet_logistic_baseline(data)             # AUROC/AUPRC via ltf.metrics

Modules: `regular`, `irregular`, `windows`, `physionet`; the baselines and the metrics are
`ltf.baselines` and `ltf.metrics`. The training tasks built on them are in `ltf.tasks.series`.
"""
