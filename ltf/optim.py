"""The optimiser from the `opt` config block: optax, with clipping and a learning-rate schedule."""

import optax


def learning_rate_schedule(opt, total_steps: int) -> optax.Schedule:
    """constant; cosine (linear warm-up, cosine decay to lr * end_lr_factor); or step: lr
    times decay_factor every decay_every_steps after decay_start_step (Zaremba et al. 2014
    halve the rate every epoch after epoch 4)."""
    if opt.schedule == "constant":
        return optax.constant_schedule(opt.lr)
    if opt.schedule == "cosine":
        warmup = min(opt.warmup_steps, max(total_steps - 1, 0))
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0 if warmup else opt.lr, peak_value=opt.lr, warmup_steps=warmup,
            decay_steps=max(total_steps, warmup + 1), end_value=opt.lr * opt.end_lr_factor)
    if opt.schedule == "step":
        return optax.exponential_decay(
            init_value=opt.lr, transition_steps=opt.decay_every_steps, decay_rate=opt.decay_factor,
            transition_begin=opt.decay_start_step, staircase=True)
    raise ValueError(f"config.opt.schedule: {opt.schedule!r}; allowed values are constant, cosine, step.")


def make_optimizer(opt, total_steps: int, *, pairs=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """optax's optimiser of `opt` with its clipping and schedule.

    pairs: None, or a function params -> bool pytree marking parameters that stand for the sum of
    two (Zaremba et al.'s two biases per gate, `LanguageModel.two_gate_biases`). Both halves of
    b = b_1 + b_2 get b's gradient g, so the pair adds 2‖g‖² to the clipping norm and b moves by
    2·lr·g: scaling g by √2 before the clip and again after is exactly that, for SGD.
    """
    schedule = learning_rate_schedule(opt, total_steps)
    if opt.name == "adam":
        base = optax.adam(schedule, b1=opt.b1, b2=opt.b2)
    elif opt.name == "adamw":
        base = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
    elif opt.name == "sgd":
        base = optax.sgd(schedule)
    else:
        raise ValueError(f"config.opt.name: {opt.name!r}; allowed values are adam, adamw, sgd.")
    chain = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm else []
    if pairs is not None:
        if opt.name != "sgd":  # Adam normalises the step: a pair is not a rescaled gradient there
            raise ValueError(f"two biases per gate are stepped as a pair for opt.name='sgd' only (got {opt.name!r}).")
        as_pair = optax.masked(optax.scale(2.0 ** 0.5), pairs)
        chain = [as_pair, *chain, as_pair]
    return optax.chain(*chain, base), schedule
