"""Text from a trained language model: prime the state with a prompt, then sample token by
token, carrying the recurrent state (one jitted step per token).

A model trained with the state carried across batches has almost never started from zeros, and
its first tokens after a zero state are poor; `warmup` text (e.g. a few hundred characters of
the training corpus) is read before the prompt, and not returned, to put the state where
training left it."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from ltf import config_lib
from ltf.data.vocab import Vocab
from ltf.models import LanguageModel
from ltf.runs import read_config, restore_params


def sample(model: LanguageModel, params, vocab: Vocab, prompt: str, length: int, *,
           temperature: float = 1.0, seed: int = 0, warmup: str = "") -> str:
    """`prompt` followed by `length` sampled tokens, decoded (after reading `warmup`, not returned)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: must be >= 0 (0 = greedy).")
    prompt_ids = vocab.encode(prompt)
    if len(prompt_ids) == 0:
        raise ValueError("prompt: encodes to no tokens; give at least one character or word.")
    apply = jax.jit(lambda p, x, s, t: model.apply(p, x, states=s, times_BxT=t))
    states, clock = model.initial_state(1), 0

    def read(ids, states):
        # The absolute time of each token, counted from the first one read (as a training row's
        # positions are): a cell that reads the clock (phased) sees one text, not a restart per call.
        nonlocal clock
        times_1xT = clock + jnp.arange(1, len(ids) + 1, dtype=jnp.float32)[None]
        clock += len(ids)
        return apply(params, jnp.asarray(ids, jnp.int32)[None], states, times_1xT)

    if warmup:
        _, states = read(vocab.encode(warmup), states)
    logits, states = read(prompt_ids, states)
    key = jax.random.PRNGKey(seed)
    out = []
    for _ in range(length):
        key, sub = jax.random.split(key)
        last = logits[0, -1]
        token = jnp.argmax(last) if temperature == 0 else jax.random.categorical(sub, last / temperature)
        out.append(int(token))
        logits, states = read([out[-1]], states)
    return prompt + vocab.decode(out)


def load_language_model(workdir, *, step: int | None = None):
    """(model, params, vocab) of a run written by `scripts/train.py` (its latest checkpoint, or `step`):
    config.json and vocab.json rebuild the model (without reading the corpus, as
    `ltf.runs.load_run` would), and `ltf.runs.restore_params` fills it from the checkpoint."""
    config = read_config(workdir)
    vocab_file = Path(workdir) / "vocab.json"
    if not vocab_file.exists():
        raise FileNotFoundError(f"{workdir}: no vocab.json; give the directory of a language-model run "
                                "written by scripts/train.py.")
    vocab = Vocab.load(vocab_file)
    model = config_lib.build_language_model(config.model, vocab.size)
    params, _ = restore_params(workdir, model, config, step=step)
    return model, params, vocab


def sample_from_workdir(workdir, *, prompt: str, length: int, temperature: float = 1.0, seed: int = 0,
                        step: int | None = None, warmup: str = "") -> str:
    model, params, vocab = load_language_model(workdir, step=step)
    return sample(model, params, vocab, prompt, length, temperature=temperature, seed=seed, warmup=warmup)
