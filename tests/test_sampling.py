"""Text from a language model (ltf/sampling.py): sampling token by token carries the state and
the clock, so it continues the text exactly as one pass over the whole text would."""

import jax
import jax.numpy as jnp
import pytest

from ltf.data.vocab import Vocab
from ltf.models import LanguageModel
from ltf.sampling import sample

WARMUP, PROMPT = "the cat ", "sat on "
PHASED = {"period_init_min": 2.0, "period_init_max": 8.0, "r_on_init": 0.5}


@pytest.mark.parametrize("cell, options", [("lstm", {}), ("phased", PHASED)])
def test_greedy_sampling_continues_the_text_as_one_pass_over_it_would(cell, options):
    """The greedy choice after each sampled token is the argmax of a single apply over warmup +
    prompt + the tokens so far. For `phased`, whose time gate reads the absolute time of each
    token, that holds only if every call continues the clock (a clock restarting at 1 per
    one-token call gives other gates: open half the time here, r_on = 0.5, so that they matter)."""
    vocab = Vocab.build("the cat sat on a mat, then ran.", "char")
    model = LanguageModel.build(vocab_size=vocab.size, d_embed=8, cell=cell, cell_options=options,
                                d_hidden=16, n_layers=1)
    params = model.init(jax.random.PRNGKey(3))
    params = jax.tree.map(lambda x: 4.0 * x, params)  # sharper logits: ties and near-ties are rare
    text = sample(model, params, vocab, PROMPT, 12, temperature=0, warmup=WARMUP)
    assert text.startswith(PROMPT) and len(text) == len(PROMPT) + 12

    ids = jnp.asarray(vocab.encode(WARMUP + text))[None]
    logits_1xTxV, _ = model.apply(params, ids)  # times 1..T: the window's own clock
    start = len(WARMUP) + len(PROMPT)
    greedy = jnp.argmax(logits_1xTxV[0, start - 1:-1], axis=-1)
    assert vocab.decode(greedy) == text[len(PROMPT):]
