"""Language modelling as a training task: next-token prediction on a corpus (`ltf.data.corpora`),
stateful truncated BPTT (`ltf.data.lm_batches`), cross-entropy, bits per character or perplexity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ltf import config_lib
from ltf.data.corpora import LMCorpus, load_lm_corpus
from ltf.data.lm_batches import lm_batches
from ltf.losses import lm_metrics, token_cross_entropy
from ltf.tasks.base import add_sums


class LanguageModelling:
    """Next-token prediction on a corpus (`ltf.data`): stateful truncated BPTT, cross-entropy,
    bits per character or perplexity."""

    def __init__(self, config, corpus: LMCorpus | None = None):
        """`corpus`: other data than the config's, e.g. a held-out file encoded with a trained run's
        vocabulary (`ltf.data.corpora.encode_with_vocab`, used by `ltf.evaluation`)."""
        self.config = config
        d = config.data
        self.corpus = corpus or load_lm_corpus(d.corpus, data_dir=d.data_dir, level=d.level)
        self.model = config_lib.build_language_model(config.model, self.corpus.vocab.size)
        test = self.corpus.splits.get("test")
        self.eval_splits = ("validation",) + (("test",) if test is not None and len(test) > 1 else ())

    def describe(self, workdir: Path) -> None:
        self.corpus.vocab.save(workdir / "vocab.json")
        (workdir / "corpus.json").write_text(json.dumps({"name": self.corpus.name,
                                                         "description": self.corpus.description}))

    def data_fingerprint(self) -> str:
        """A digest of the vocabulary and every split's tokens: hosts of one run compare it."""
        h = hashlib.sha256(json.dumps(list(self.corpus.vocab.tokens)).encode())
        for name in sorted(self.corpus.splits):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.corpus.splits[name]).tobytes())
        return h.hexdigest()

    def train_batches(self, seed: int):
        d = self.config.data
        return lm_batches(self.corpus.splits["train"], d.batch_size, d.seq_len, train=True, seed=seed,
                          carry_state=d.carry_state, random_offset=d.random_offset)

    def eval_batches(self, split: str):
        d = self.config.data
        return lm_batches(self.corpus.splits[split], d.eval_batch_size, d.seq_len, train=False)

    def _sums(self, params, carry, batch, dropout_rng):
        logits, carry = self.model.apply(params, batch["inputs"], batch["dt"], batch["mask"], carry,
                                         dropout_rng=dropout_rng, times_BxT=batch.get("times"))
        loss_sum, count = token_cross_entropy(logits, batch["targets"], batch["mask"])
        return carry, {"loss_sum": loss_sum, "count": count}

    def loss(self, params, carry, batch, dropout_rng):
        carry, sums = self._sums(params, carry, batch, dropout_rng)
        return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (carry, sums)

    def eval_outputs(self, params, carry, batch):
        return self._sums(params, carry, batch, None)

    def scalars(self, sums):
        return lm_metrics(sums["loss_sum"], sums["count"], self.corpus.level)

    def eval_scalars(self, outputs):
        return self.scalars(add_sums(outputs))
