"""One measurement of scripts/bench.py: the 1-layer char LM in each implementation, its train
step timed, and the result row. bench.py runs `run_worker` once per (impl, cell, size), each in
a process of its own (`bench.py --worker`, one JSON line on stdout).

The model: tokens (vocab 256) -> embedding 256 x E -> one recurrent layer of width H -> dense
H x 256 -> softmax cross-entropy (mean over the B·T tokens) -> Adam (lr 1e-3; optax for the JAX
implementations, torch.optim.Adam for torch). E = H unless d_embed is given; every
implementation uses the same E. Inputs are random tokens drawn once (seeded); every step starts
from a zero recurrent state. Implementations ("impl", "cell"):

  ltf   lstm, lstm_noforget, adaptive, time_aware, tlstm, phased, ctlstm, gru, grud
        (ltf.models.LanguageModel, default options; text's Δt = 1, phased's clock 1..T)
  ltf   time_aware+attention: AttentionSpec(score="dot", normaliser="softmax", window=64)
  flax  lstm: flax.linen nn.RNN(nn.OptimizedLSTMCell(H)) between nn.Embed and nn.Dense
  torch lstm: torch.nn.LSTM (CPU, torch.set_num_threads(os.cpu_count())); skipped with a note
        when torch cannot be imported

A JAX step is `jax.jit` with the train state (params, optimiser state) donated; the clock stops
after `jax.block_until_ready`. The first step (compilation) and `warmup` more are excluded from
the timing. `remat` builds the ltf models with `remat=True`; `malloc="tuned"` calls
`ltf.allocator.keep_freed_memory()` before anything runs.
"""

from __future__ import annotations

import os
import resource
import statistics
import time

LTF_CELLS = ("lstm", "lstm_noforget", "adaptive", "time_aware", "tlstm", "phased", "ctlstm", "gru", "grud",
             "time_aware+attention")
IMPLS = ("ltf", "flax", "torch")
MALLOCS = ("default", "tuned")  # glibc as it comes, or ltf.allocator.keep_freed_memory() in every worker
VOCAB = 256
LR = 1e-3


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def time_steps(step, n_warmup: int, n_steps: int) -> tuple[float, list[float]]:
    """Calls step() (which blocks until done) once for compilation, n_warmup more, n_steps timed."""
    t0 = time.perf_counter()
    step()
    compile_s = time.perf_counter() - t0
    for _ in range(n_warmup):
        step()
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return compile_s, times


# -- JAX implementations ---------------------------------------------------------------------------

def _ltf_model(cell: str, d_embed: int, d_hidden: int, remat: bool = False):
    from ltf.models import AttentionSpec, LanguageModel

    base, _, extra = cell.partition("+")
    attn = AttentionSpec(score="dot", normaliser="softmax", window=64) if extra == "attention" else None
    if extra not in ("", "attention"):
        raise ValueError(f"cell={cell!r}: allowed values are {LTF_CELLS}.")
    model = LanguageModel.build(vocab_size=VOCAB, d_embed=d_embed, cell=base, d_hidden=d_hidden,
                                n_layers=1, attention=attn, remat=remat)
    return model.init, lambda params, tokens: model.apply(params, tokens)[0]


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
    return init, lambda params, tokens: module.apply({"params": params}, tokens)


def jax_step(impl: str, cell: str, B: int, T: int, H: int, E: int, *, seed: int = 0, remat: bool = False,
             forward_backward: bool = False):
    """The measured JAX step as a no-argument callable that runs one step and blocks until it is
    done (the train state lives inside it); also what `scripts/bench_profile.py` profiles."""
    import jax
    import jax.numpy as jnp
    import optax

    from ltf.losses import token_cross_entropy

    init, logits_fn = _ltf_model(cell, E, H, remat) if impl == "ltf" else _flax_model(E, H)
    key_params, key_data = jax.random.split(jax.random.PRNGKey(seed))
    tokens_BxT1 = jax.random.randint(key_data, (B, T + 1), 0, VOCAB, jnp.int32)
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1], tokens_BxT1[:, 1:]
    mask_BxT = jnp.ones((B, T), jnp.float32)
    params = init(key_params)

    def loss_fn(params, inputs_BxT, targets_BxT):
        loss_sum, count = token_cross_entropy(logits_fn(params, inputs_BxT), targets_BxT, mask_BxT)
        return loss_sum / count

    if forward_backward:
        fb = jax.jit(jax.value_and_grad(loss_fn))
        step = lambda: jax.block_until_ready(fb(params, inputs_BxT, targets_BxT))
    else:
        tx = optax.adam(LR)

        def train_step(state, inputs_BxT, targets_BxT):
            params, opt_state = state
            loss, grads = jax.value_and_grad(loss_fn)(params, inputs_BxT, targets_BxT)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        train_step = jax.jit(train_step, donate_argnums=0)
        holder = {"state": (params, tx.init(params))}
        del params

        def step():
            holder["state"], loss = train_step(holder["state"], inputs_BxT, targets_BxT)
            jax.block_until_ready((holder["state"], loss))

    jax.block_until_ready(tokens_BxT1)
    return step


def _jax_worker(impl: str, cell: str, B: int, T: int, H: int, E: int, *, steps: int, warmup: int,
                forward_backward: bool, seed: int, remat: bool = False) -> dict:
    import jax

    step = jax_step(impl, cell, B, T, H, E, seed=seed, remat=remat, forward_backward=forward_backward)
    base_rss = _rss_mb()
    compile_s, times = time_steps(step, warmup, steps)
    return {"compile_s": compile_s, "times": times, "base_rss_mb": base_rss,
            "versions": {"jax": jax.__version__, "device_kind": jax.devices()[0].device_kind,
                         "jax_backend": jax.default_backend()}}


# -- PyTorch ---------------------------------------------------------------------------------------

def _torch_worker(B: int, T: int, H: int, E: int, *, steps: int, warmup: int, forward_backward: bool,
                  seed: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(seed)

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.lstm, self.out = nn.Embedding(VOCAB, E), nn.LSTM(E, H, batch_first=True), nn.Linear(H, VOCAB)

        def forward(self, tokens_BxT):
            hs_BxTxH, _ = self.lstm(self.embed(tokens_BxT))
            return self.out(hs_BxTxH)

    model = CharLM()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    tokens_BxT1 = torch.randint(0, VOCAB, (B, T + 1))
    inputs_BxT, targets_BxT = tokens_BxT1[:, :-1].contiguous(), tokens_BxT1[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        logits_BxTxV = model(inputs_BxT)
        loss = nn.functional.cross_entropy(logits_BxTxV.reshape(-1, VOCAB), targets_BxT.reshape(-1))
        loss.backward()
        if not forward_backward:
            opt.step()
        return loss.item()

    base_rss = _rss_mb()
    compile_s, times = time_steps(step, warmup, steps)
    return {"compile_s": compile_s, "times": times, "base_rss_mb": base_rss,
            "versions": {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}}


def run_worker(impl: str, cell: str, B: int, T: int, H: int, *, d_embed: int | None = None,
               steps: int = 10, warmup: int = 2, forward_backward: bool = False, seed: int = 0,
               remat: bool = False, malloc: str = "default") -> dict:
    """One measurement in this process. Returns a result row (its columns: scripts/bench.py)."""
    if malloc not in MALLOCS:
        raise ValueError(f"malloc={malloc!r}: allowed values are {MALLOCS}.")
    if malloc == "tuned":  # before any computation starts the libraries' threads
        from ltf import allocator

        if not allocator.keep_freed_memory():
            raise RuntimeError("--malloc tuned needs glibc (Linux); use --malloc default here.")
    E = H if d_embed is None else d_embed
    kwargs = dict(steps=steps, warmup=warmup, forward_backward=forward_backward, seed=seed)
    row = {"impl": impl, "cell": cell, "B": B, "T": T, "H": H, "E": E,
           "mode": "forward_backward" if forward_backward else "train", "steps": steps,
           "remat": remat and impl == "ltf", "malloc": malloc}
    if impl == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as e:
            return {**row, "skipped": f"torch is not importable ({e})"}
        out = _torch_worker(B, T, H, E, **kwargs)
    elif impl in ("ltf", "flax"):
        if impl == "flax" and cell != "lstm":
            raise ValueError(f"impl=flax has only cell='lstm' (OptimizedLSTMCell), got {cell!r}.")
        out = _jax_worker(impl, cell, B, T, H, E, remat=remat, **kwargs)
    else:
        raise ValueError(f"impl={impl!r}: allowed values are {IMPLS}.")
    step_s = statistics.median(out["times"])
    row.update({"step_ms": 1e3 * step_s, "min_ms": 1e3 * min(out["times"]), "tokens_per_s": B * T / step_s,
                **{k: v for k, v in out.items() if k != "times"}, "peak_rss_mb": _rss_mb(),
                "load_1m": os.getloadavg()[0]})
    return row
