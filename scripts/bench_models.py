"""What scripts/bench.py measures: its two models in each implementation, built for one worker
(`scripts/bench_workers.py` times their train step).

The models ("model"), both trained by Adam (lr 1e-3) from a zero recurrent state at every step,
on inputs drawn once (seeded):

  char_lm  tokens (vocab 256) -> embedding 256 x E -> one recurrent layer of width H -> dense
           H x 256 -> softmax cross-entropy (mean over the B·T tokens)
  layer    the recurrent layer alone: a fixed random dense xs (B x T x E) -> one recurrent layer of
           width H -> loss mean(hs ⊙ R), R a fixed random B x T x H array (no embedding, no softmax)

E = H unless d_embed is given; every implementation uses the same E. Implementations ("impl", "cell"):

  ltf   lstm, lstm_noforget, adaptive, time_aware, tlstm, phased, ctlstm, gru, grud, and lstm+decay
        (GRU-D's hidden decay on the lstm: make_cell("lstm", decay=True)); the gated linear
        recurrences rglru, linear_decay and mlstm (4 heads), each in its `form="auto"` (on CPU:
        sequential for the diagonal ones, chunkwise for mlstm; `scripts/bench_recurrences.py`
        compares the forms). char_lm:
        ltf.models.LanguageModel, default options but `input_projection`; layer: ltf.rnn.scan_layer
        of ltf.cells.registry.make_cell(cell). Δt = 1 (text has no time); the cells that read the
        clock (`uses_times`: phased) get 1..T as its last column (ltf.models.with_times)
  ltf   time_aware+attention, char_lm only: AttentionSpec(score="dot", normaliser="softmax", window=64)
  ltf_xla  lstm: ltf with LTF_CPU_KERNEL=off (its XLA scans where the compiled CPU kernel,
        `ltf.cpu_kernel`, would run lstm; the same everywhere else)
  flax  lstm: flax.linen nn.RNN(nn.OptimizedLSTMCell(H)) (char_lm: between nn.Embed and nn.Dense)
  torch lstm: torch.nn.LSTM(E, H, batch_first=True) (char_lm: between nn.Embedding and nn.Linear)

"path", how the layer's input projection x_t W_x is computed: "dense" for the layer model (one
B·T x E matmul); for the char LM "per_token" in flax and torch (the looked-up embeddings times
W_x), and in ltf what `LanguageModel.projection_path(B·T, training=False)` says: "per_vocab" (rows
gathered from the V x G table E W_x; the default "auto" takes it when V < B·T) or "per_token".
"""

from __future__ import annotations

MODELS = ("char_lm", "layer")
LTF_CELLS = ("lstm", "lstm_noforget", "adaptive", "time_aware", "tlstm", "phased", "ctlstm", "gru", "grud",
             "lstm+decay", "time_aware+attention", "rglru", "linear_decay", "mlstm")
CELL_SUFFIXES = ("attention", "decay")  # "+attention" after the layer (char_lm); "+decay": GRU-D's hidden decay
INPUT_PROJECTIONS = ("auto", "per_vocab", "per_token")  # ltf.models.LanguageModel(input_projection=...)
VOCAB = 256


def split_cell(cell: str) -> tuple[str, dict, bool]:
    """An ltf cell of the bench -> (registry name, its options, attention after the layer):
    "lstm+decay" -> ("lstm", {"decay": True}, False); "time_aware+attention" -> ("time_aware", {}, True)."""
    base, *suffixes = cell.split("+")
    if not set(suffixes) <= set(CELL_SUFFIXES) or len(set(suffixes)) < len(suffixes):
        raise ValueError(f"cell={cell!r}: a cell name with suffixes from {CELL_SUFFIXES}, each once; "
                         f"the bench's cells are {LTF_CELLS}.")
    return base, ({"decay": True} if "decay" in suffixes else {}), "attention" in suffixes


def ltf_cell(cell: str):
    """The recurrent cell of a bench cell name ("+attention" runs after it, in the char LM)."""
    from ltf.cells.registry import make_cell

    base, options, _ = split_cell(cell)
    return make_cell(base, **options)


def input_path(model: str, impl: str, cell: str, B: int, T: int, H: int, E: int, *, remat: bool = False,
               input_projection: str = "auto") -> str:
    """The row's "path": how x_t W_x is computed (see the module docstring)."""
    if model == "layer":
        return "dense"
    if impl not in ("ltf", "ltf_xla"):
        return "per_token"
    lm = ltf_language_model(cell, E, H, remat=remat, input_projection=input_projection)
    return lm.projection_path(B * T, training=False)


# -- JAX: ltf and flax -----------------------------------------------------------------------------

def ltf_language_model(cell: str, d_embed: int, d_hidden: int, *, remat: bool = False,
                       input_projection: str = "auto"):
    """The ltf char LM (an ltf.models.LanguageModel)."""
    from ltf.models import AttentionSpec, LanguageModel

    base, cell_options, attention = split_cell(cell)
    attn = AttentionSpec(score="dot", normaliser="softmax", window=64) if attention else None
    return LanguageModel.build(vocab_size=VOCAB, d_embed=d_embed, cell=base, cell_options=cell_options,
                               d_hidden=d_hidden, n_layers=1, attention=attn, remat=remat,
                               input_projection=input_projection)


def _ltf_model(cell: str, d_embed: int, d_hidden: int, remat: bool = False, input_projection: str = "auto"):
    model = ltf_language_model(cell, d_embed, d_hidden, remat=remat, input_projection=input_projection)
    return model.init, lambda params, tokens_BxT: model.apply(params, tokens_BxT)[0]


def _flax_model(d_embed: int, d_hidden: int):
    import flax.linen as nn
    import numpy as np

    class CharLM(nn.Module):
        @nn.compact
        def __call__(self, tokens_BxT):
            xs_BxTxE = nn.Embed(VOCAB, d_embed)(tokens_BxT)
            hs_BxTxH = nn.RNN(nn.OptimizedLSTMCell(d_hidden))(xs_BxTxE)
            return nn.Dense(VOCAB)(hs_BxTxH)

    module = CharLM()
    init = lambda key: module.init(key, np.zeros((1, 2), np.int32))["params"]
    return init, lambda params, tokens_BxT: module.apply({"params": params}, tokens_BxT)


def _ltf_layer(cell: str, d_in: int, d_hidden: int, remat: bool = False):
    import jax.numpy as jnp

    from ltf.models import with_times
    from ltf.rnn import scan_layer

    if split_cell(cell)[2]:
        raise ValueError(f"cell={cell!r}: attention runs over the char LM's hidden states, model='char_lm' "
                         "only; model='layer' is the recurrent layer alone.")
    layer_cell = ltf_cell(cell)

    def hs_fn(params, xs_BxTxE):
        dts_BxTxK = jnp.ones(xs_BxTxE.shape[:2] + (1,), xs_BxTxE.dtype)  # Δt = 1
        if layer_cell.uses_times:  # the clock 1..T as the last column, as the models append it
            dts_BxTxK = with_times(dts_BxTxK)
        return scan_layer(layer_cell, params, xs_BxTxE, dts_BxTxK, remat=remat)[1]

    return lambda key: layer_cell.init(key, d_in, d_hidden), hs_fn


def _flax_layer(d_in: int, d_hidden: int):
    import flax.linen as nn
    import numpy as np

    module = nn.RNN(nn.OptimizedLSTMCell(d_hidden))
    init = lambda key: module.init(key, np.zeros((1, 2, d_in), np.float32))["params"]
    return init, lambda params, xs_BxTxE: module.apply({"params": params}, xs_BxTxE)


def jax_problem(model: str, impl: str, cell: str, B: int, T: int, H: int, E: int, *, seed: int = 0,
                remat: bool = False, input_projection: str = "auto"):
    """(params, loss_fn(params, *batch), batch): the model's parameters, its loss and the fixed inputs."""
    import jax
    import jax.numpy as jnp

    from ltf.losses import token_cross_entropy

    if model == "layer":
        init, hs_fn = _ltf_layer(cell, E, H, remat) if impl.startswith("ltf") else _flax_layer(E, H)
        key_params, key_xs, key_r = jax.random.split(jax.random.PRNGKey(seed), 3)
        xs_BxTxE = jax.random.normal(key_xs, (B, T, E), jnp.float32)
        r_BxTxH = jax.random.normal(key_r, (B, T, H), jnp.float32)
        loss_fn = lambda params, xs_BxTxE, r_BxTxH: jnp.mean(hs_fn(params, xs_BxTxE) * r_BxTxH)
        return init(key_params), loss_fn, (xs_BxTxE, r_BxTxH)

    init, logits_fn = _ltf_model(cell, E, H, remat, input_projection) if impl.startswith("ltf") else _flax_model(E, H)
    key_params, key_data = jax.random.split(jax.random.PRNGKey(seed))
    tokens_BxT1 = jax.random.randint(key_data, (B, T + 1), 0, VOCAB, jnp.int32)
    mask_BxT = jnp.ones((B, T), jnp.float32)

    def loss_fn(params, inputs_BxT, targets_BxT):
        loss_sum, count = token_cross_entropy(logits_fn(params, inputs_BxT), targets_BxT, mask_BxT)
        return loss_sum / count

    return init(key_params), loss_fn, (tokens_BxT1[:, :-1], tokens_BxT1[:, 1:])


# -- PyTorch ---------------------------------------------------------------------------------------

def torch_problem(model: str, B: int, T: int, H: int, E: int, device):
    """(module, loss_fn()): the model on `device` and its loss on fixed inputs there (drawn on the
    CPU from torch's seeded generator, so that every device gets the same)."""
    import torch
    from torch import nn

    if model == "layer":
        module = nn.LSTM(E, H, batch_first=True).to(device)
        xs_BxTxE, r_BxTxH = torch.randn(B, T, E).to(device), torch.randn(B, T, H).to(device)
        return module, lambda: (module(xs_BxTxE)[0] * r_BxTxH).mean()

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.lstm = nn.Embedding(VOCAB, E), nn.LSTM(E, H, batch_first=True)
            self.out = nn.Linear(H, VOCAB)

        def forward(self, tokens_BxT):
            hs_BxTxH, _ = self.lstm(self.embed(tokens_BxT))
            return self.out(hs_BxTxH)

    module = CharLM().to(device)
    tokens_BxT1 = torch.randint(0, VOCAB, (B, T + 1))
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1].contiguous().to(device), tokens_BxT1[:, 1:].contiguous().to(device)
    loss_fn = lambda: nn.functional.cross_entropy(module(inputs_BxT).reshape(-1, VOCAB), targets_BxT.reshape(-1))
    return module, loss_fn
