"""Losses as (sum, count) pairs, so that bits per character and perplexity are computed from
summed losses and token counts over a whole split, never as means of means."""

import math

import jax.numpy as jnp
import optax


def token_cross_entropy(logits_BxTxV, targets_BxT, mask_BxT):
    """Summed softmax cross-entropy (nats) over the unmasked tokens, and their count."""
    losses_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT)
    return jnp.sum(losses_BxT * mask_BxT), jnp.sum(mask_BxT)


def lm_metrics(loss_sum: float, count: float, level: str) -> dict[str, float]:
    """loss (nats/token), and bits per character (char level) or perplexity (word level)."""
    loss = loss_sum / max(count, 1.0)
    out = {"loss": loss}
    if level == "char":
        out["bpc"] = loss / math.log(2.0)
    else:
        out["perplexity"] = math.exp(min(loss, 700.0))
    return out
