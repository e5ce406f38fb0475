"""Time series (`ltf.data.series`) as training tasks (`ltf.tasks.base.Task`).

    config.task.name   data                                               head        metrics
    forecast           a series (regular or irregular version) in          last step   loss (MSE or MAE, normalised),
                       windows of L inputs -> the next H values                         mse, mae (original scale)
    physionet          PhysioNet/CinC 2012 set A (+ B, C): in-hospital    last step   loss (BCE), auroc, auprc
                       death from the first 48 h                          or pooled

Normalisation comes from the training split only (see ltf.data.series.windows and .physionet); the
forecasting errors are computed after undoing it, so they read in the series' own units.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ltf import config_lib
from ltf.data.series.irregular import make_irregular
from ltf.data.series.physionet_summaries import N_FEATURES as N_SUMMARY_FEATURES
from ltf.data.series.regular import load_series
from ltf.data.series.windows import make_windows
from ltf.metrics import classification_metrics
from ltf.tasks.base import add_sums
from ltf.writers import json_safe


def _write_task(task_cfg, workdir: Path, **extra) -> None:
    record = {**task_cfg.to_dict(), **extra}
    (workdir / "task.json").write_text(json.dumps(json_safe(record, strict=False), indent=1))


class _SplitBatches:
    """Batches from `self.data` (ForecastData, or PhysioNetData through grain): training shuffled
    by the run's seed, evaluation one ordered pass over a split."""

    def train_batches(self, seed: int):
        return self.data.batches("train", self.data_cfg.batch_size, train=True, seed=seed)

    def eval_batches(self, split: str):
        return self.data.batches(split, self.data_cfg.eval_batch_size, train=False)


RESIDUALS = ("none", "seasonal_naive", "seasonal_change")  # the last two: ltf.baselines.SEASONAL_FORECASTS
LOSSES = ("mse", "mae")  # the training loss, on the normalised scale
# Per-stay features a PhysioNet head can read beside h: name -> (batch keys, width).
HEAD_FEATURES = {"static": (("static", "static_mask"), 16),  # 8 static fields and their observed-flags
                 "summaries": (("summaries",), N_SUMMARY_FEATURES)}  # the baseline's (physionet_summaries)
PHYSIONET_RESIDUALS = ("none", "logistic")  # "logistic": ltf.baselines.physionet_logistic_baseline
PROB_FLOOR = 1e-6  # an ensemble's mean probability, kept off 0 and 1 so that its logit is finite
WINDOW_SCALE_FLOOR = 1e-2  # in units of the series' training std: a flat window is not blown up


class Forecast(_SplitBatches):
    """Multi-step forecasting (H outputs from the last step's state; H = 1 is one-step).

    What forecasters do, as options for every arm alike (`config.task`):
    - residual="seasonal_naive": the model predicts the correction to the seasonal naive
      forecast (`ltf.baselines.seasonal_naive`, the value one season back, from the same
      observations), ŷ = naive + out, so that an untrained head (out ≈ 0) already forecasts
      as well as the baseline and training only has to learn what the season does not say;
      residual="seasonal_change" likewise over the seasonal naive plus the last season's change
      (`ltf.baselines.seasonal_change`: the level a trend or a shift has reached);
    - window_norm=True: each window's inputs are standardised by their own mean μ_w and std
      σ_w (over its observed values; RevIN-style instance normalisation, Kim et al. 2022), and
      the output is scaled back: ŷ = μ_w + σ_w·out, or naive + σ_w·out with the residual;
    - loss="mae": train on the absolute error, the metric forecasts are ranked by. Squared
      error is minimised by the conditional mean, absolute error by the median: where the
      errors are heavy-tailed (demand seen at sparse times), MSE lets a few large misses set the
      fit, and the run's model selection (`train.select_by="loss"`) follows the MAE too.
    """

    eval_splits = ("validation", "test")

    def __init__(self, config):
        self.config = t = config.task
        self.data_cfg = config.data
        series = load_series(t.series)
        observed = make_irregular(series, t.kind, keep=t.keep, rate=t.rate, seed=t.data_seed)
        self.data = make_windows(observed, t.L, t.H, fractions=tuple(t.fractions), layout=t.layout)
        self.season = series.season
        self.residual, self.window_norm = t.get("residual", "none"), bool(t.get("window_norm", False))
        if self.residual not in RESIDUALS:
            raise ValueError(f"config.task.residual: {self.residual!r}; allowed values are {RESIDUALS}.")
        self.loss_name = t.get("loss", "mse")
        if self.loss_name not in LOSSES:
            raise ValueError(f"config.task.loss: {self.loss_name!r}; allowed values are {LOSSES}.")
        if self.residual != "none":
            # Here, not at the top: ltf.baselines imports the PhysioNet data module (grain, TFDS: ~1 s).
            from ltf import baselines  # noqa: PLC0415

            if not self.season:
                raise ValueError(f"config.task.residual={self.residual!r}: the series {t.series!r} has no "
                                 "season; use residual='none'.")
            forecast = baselines.SEASONAL_FORECASTS[self.residual]
            for split, windows in self.data.splits.items():  # the baseline, normalised like the targets
                naive_KxH = self.data.normaliser.apply(forecast(self.data, split, self.season))
                windows.arrays["naive"] = naive_KxH.astype(np.float32).reshape(len(windows), t.H)
        if config.model.head not in ("last", "attention_pool"):
            raise ValueError(f"config.model.head: {config.model.head!r}; forecasting needs 'last' or "
                             "'attention_pool' (one output vector of H values per window).")
        self.model = config_lib.build_sequence_model(config.model, 1, t.H)

    def describe(self, workdir: Path) -> None:
        _write_task(self.config, workdir, windows=repr(self.data))

    def _predict(self, params, carry, batch, dropout_rng):
        x_BxLx1, obs_BxLx1 = batch["inputs"], batch["obs_mask"]
        loc_Bx1, scale_Bx1 = jnp.zeros(x_BxLx1.shape[:1] + (1,)), jnp.ones(x_BxLx1.shape[:1] + (1,))
        if self.window_norm:  # μ_w, σ_w over the window's observed values
            n_Bx1 = jnp.maximum(jnp.sum(obs_BxLx1, axis=1), 1.0)
            loc_Bx1 = jnp.sum(x_BxLx1 * obs_BxLx1, axis=1) / n_Bx1
            var_Bx1 = jnp.sum(obs_BxLx1 * (x_BxLx1 - loc_Bx1[:, None]) ** 2, axis=1) / n_Bx1
            scale_Bx1 = jnp.sqrt(var_Bx1 + WINDOW_SCALE_FLOOR ** 2)
            x_BxLx1 = jnp.where(obs_BxLx1 > 0, (x_BxLx1 - loc_Bx1[:, None]) / scale_Bx1[:, None], 0.0)
        out_BxH, carry = self.model.apply(params, x_BxLx1, batch["dt"], batch["mask"], obs_BxLx1, carry,
                                          dropout_rng=dropout_rng, times_BxT=batch.get("times"))
        base_BxH = batch["naive"] if self.residual != "none" else loc_Bx1
        return base_BxH + scale_Bx1 * out_BxH, carry

    def _sums(self, pred_BxH, batch):
        weight_BxH = batch["target_mask"] * batch["example_mask"][:, None]
        err_BxH = (pred_BxH - batch["targets"]) * weight_BxH
        raw_BxH = err_BxH * batch["scale"]  # the error in the series' units: (p - y)·scale
        loss_BxH = jnp.abs(err_BxH) if self.loss_name == "mae" else err_BxH**2
        return {"loss_sum": jnp.sum(loss_BxH), "count": jnp.sum(weight_BxH),
                "se_sum": jnp.sum(raw_BxH**2), "ae_sum": jnp.sum(jnp.abs(raw_BxH))}

    def loss(self, params, carry, batch, dropout_rng):
        pred, carry = self._predict(params, carry, batch, dropout_rng)
        sums = self._sums(pred, batch)
        return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (carry, sums)

    def eval_outputs(self, params, carry, batch):
        pred, carry = self._predict(params, carry, batch, None)
        return carry, self._sums(pred, batch)

    def prediction(self, params, carry, batch):  # ltf.ensemble: the forecast ŷ [B,H] (normalised scale)
        pred, carry = self._predict(params, carry, batch, None)
        return carry, pred

    def outputs_from(self, pred_BxH, batch):
        return self._sums(jnp.asarray(pred_BxH, jnp.float32), batch)

    def scalars(self, sums):
        n = max(sums["count"], 1.0)
        return {"loss": sums["loss_sum"] / n, "mse": sums["se_sum"] / n, "mae": sums["ae_sum"] / n}

    def eval_scalars(self, outputs):
        return self.scalars(add_sums(outputs))


class PhysioNet(_SplitBatches):
    """In-hospital mortality from irregular ICU time series: one logit per stay.

    Options (`config.task`): use_static, use_summaries (features beside h in the head, above);
    residual="logistic": the logit is the logistic-regression baseline's on the stay's summaries
    (`ltf.baselines.physionet_logistic_baseline`: fitted on the training split, C chosen on
    validation, then frozen) plus the model's output, z = x_sum·w + b + out, so that an untrained
    head already scores as the baseline and training learns the correction to it, as the
    forecasters' residual over the seasonal naive does.
    """

    def __init__(self, config):
        self.config = t = config.task
        self.data_cfg = config.data
        # Here, not at the top: grain and TFDS take ~1 s to import, and ltf.tasks.registry
        # imports this module for every task.
        from ltf.data.series.physionet import load_physionet  # noqa: PLC0415

        self.residual = t.get("residual", "none")
        if self.residual not in PHYSIONET_RESIDUALS:
            raise ValueError(f"config.task.residual: {self.residual!r}; allowed values are {PHYSIONET_RESIDUALS}.")
        # Beside h in the head, each HEAD_FEATURES entry whose task.use_<name> is on, in that order.
        self.head_features = tuple(k for k in HEAD_FEATURES if t.get(f"use_{k}", False))
        self.data = load_physionet(t.data_dir, extra_sets=tuple(t.extra_sets), seed=t.split_seed,
                                   protocol=t.get("protocol", "ltf"), fold=t.get("fold", 0),
                                   winsorise=t.get("winsorise", 0.0),
                                   summaries="summaries" in self.head_features or self.residual == "logistic")
        self.eval_splits = ("validation", "test") + tuple(s for s in self.data.splits
                                                          if s not in ("train", "validation", "test"))
        if t.dt not in ("event", "per_variable"):
            raise ValueError(f"config.task.dt: {t.dt!r}; allowed values are 'event' (time since the last "
                             "event) and 'per_variable' (time since each variable's last observation).")
        d_time = config.model.cell_options.get("d_time") or 1
        if t.dt == "per_variable" and d_time != 37:
            raise ValueError("config.task.dt='per_variable' feeds 37 time gaps: set "
                             "--config.model.cell_options.d_time=37 (a time-aware cell).")
        if config.model.head not in ("last", "attention_pool"):
            raise ValueError(f"config.model.head: {config.model.head!r}; mortality needs 'last' or "
                             "'attention_pool' (one logit per stay).")
        self.model = config_lib.build_sequence_model(
            config.model, 37, 1, d_static=sum(HEAD_FEATURES[k][1] for k in self.head_features))
        self.baseline_wb = None  # (w [193], b): the frozen baseline on the batches' standardised summaries
        if self.residual == "logistic":
            from ltf import baselines  # noqa: PLC0415  (imports grain and TFDS, as above)

            fit = baselines.physionet_logistic_baseline(self.data)["model"]
            self.baseline_wb = (jnp.asarray(fit.w, jnp.float32), float(fit.b))

    def describe(self, workdir: Path) -> None:
        _write_task(self.config, workdir, data=repr(self.data))

    def _logits(self, params, carry, batch, dropout_rng):
        dt = batch["dt_var"] if self.config.dt == "per_variable" else batch["dt"]
        static = (jnp.concatenate([batch[k] for f in self.head_features for k in HEAD_FEATURES[f][0]], axis=-1)
                  if self.head_features else None)
        out_Bx1, carry = self.model.apply(params, batch["inputs"], dt, batch["mask"], batch["obs_mask"], carry,
                                          dropout_rng=dropout_rng, times_BxT=batch["times"], static_BxS=static)
        if self.baseline_wb is not None:
            w_F, b = self.baseline_wb
            return out_Bx1[:, 0] + batch["summaries"] @ w_F + b, carry
        return out_Bx1[:, 0], carry

    def _sums(self, logits_B, batch):
        labels_B = batch["targets"].astype(logits_B.dtype)
        weight_B = batch["example_mask"]
        losses_B = optax.sigmoid_binary_cross_entropy(logits_B, labels_B)
        return {"loss_sum": jnp.sum(losses_B * weight_B), "count": jnp.sum(weight_B)}

    def loss(self, params, carry, batch, dropout_rng):
        logits, carry = self._logits(params, carry, batch, dropout_rng)
        sums = self._sums(logits, batch)
        return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (carry, sums)

    def _outputs(self, logits_B, batch):
        return {**self._sums(logits_B, batch), "logits_B": logits_B, "labels_B": batch["targets"],
                "weight_B": batch["example_mask"]}

    def eval_outputs(self, params, carry, batch):
        logits, carry = self._logits(params, carry, batch, None)
        return carry, self._outputs(logits, batch)

    def prediction(self, params, carry, batch):  # ltf.ensemble: P(death) [B], averaged between members
        logits, carry = self._logits(params, carry, batch, None)
        return carry, jax.nn.sigmoid(logits)

    def outputs_from(self, prob_B, batch):
        p_B = jnp.clip(jnp.asarray(prob_B, jnp.float32), PROB_FLOOR, 1.0 - PROB_FLOOR)
        return self._outputs(jnp.log(p_B) - jnp.log1p(-p_B), batch)  # the logit of the mean probability

    def scalars(self, sums):
        return {"loss": sums["loss_sum"] / max(sums["count"], 1.0)}

    def eval_scalars(self, outputs):
        out = self.scalars(add_sums([{k: o[k] for k in ("loss_sum", "count")} for o in outputs]))
        keep = np.concatenate([o["weight_B"] for o in outputs]) > 0
        labels = np.concatenate([o["labels_B"] for o in outputs])[keep]
        scores = np.concatenate([o["logits_B"] for o in outputs])[keep]
        out.update({k: v for k, v in classification_metrics(labels, scores).items() if k in ("auroc", "auprc")})
        return out


# config.task.name -> task; ltf.tasks.registry collects these
TASKS = {"forecast": Forecast, "physionet": PhysioNet}
