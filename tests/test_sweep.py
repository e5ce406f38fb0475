"""Sweeps as named runs (ltf/sweep.py): expansion of get_sweep, names, overrides."""

from pathlib import Path

import pytest

from ltf import sweep

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "tlstm_lm.py"
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._,=+-")


def test_the_ablation_expands_into_uniquely_named_runs_seed_major():
    runs = sweep.load_sweep(str(CONFIG)).runs
    assert len(runs) == 6 * 3
    assert [r.name for r in runs[:6]] == [
        "cell=lstm,seed=0", "cell=lstm_noforget,seed=0", "cell=adaptive,seed=0", "cell=time_aware,seed=0",
        "cell=time_aware,normaliser=softmax,window=64,seed=0", "cell=tlstm,seed=0"]
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    assert names == [r.name for r in sweep.load_sweep(str(CONFIG)).runs]  # deterministic
    assert {r.arm for r in runs} == {n.removesuffix(",seed=0") for n in names[:6]}
    assert {r.seed for r in runs} == {0, 1, 2}


def test_sweep_choices_pick_arms_and_seeds_and_pass_the_rest_to_get_config():
    runs = sweep.load_sweep(f"{CONFIG}:arms=lstm+tlstm,seeds=2,smoke").runs
    assert [r.name for r in runs] == ["smoke,cell=lstm,seed=0", "smoke,cell=tlstm,seed=0",
                                      "smoke,cell=lstm,seed=1", "smoke,cell=tlstm,seed=1"]
    assert all(r.config_arg == "smoke" and r.steps == 6 for r in runs)
    with pytest.raises(ValueError, match="gru"):
        sweep.load_sweep(f"{CONFIG}:arms=lstm+gru")
    with pytest.raises(ValueError, match="nonsense"):
        sweep.load_sweep(f"{CONFIG}:nonsense")
    with pytest.raises(ValueError, match="arms="):
        sweep.load_sweep(f"{CONFIG}:cell=lstm")


def test_names_are_short_safe_and_tell_apart_keys_that_end_alike():
    assert sweep.run_name({"model.cell": "lstm", "seed": 1}) == "cell=lstm,seed=1"
    assert sweep.run_name({"model.window": 4, "data.window": None}) == "model.window=4,data.window=none"
    assert sweep.run_name({"config_arg": "smoke,chrono", "opt.lr": 1e-3}) == "smoke,chrono,lr=0.001"
    odd = sweep.run_name({"data.data_dir": "../x y/ü*?", "model.remat": True})
    assert set(odd) <= SAFE and odd == "data_dir=.._x_y____,remat=true"
    long = sweep.run_name({f"model.field_{i}": "v" * 20 for i in range(8)})
    assert len(long) == sweep.MAX_NAME and set(long) <= SAFE
    assert long != sweep.run_name({f"model.field_{i}": "v" * 20 for i in range(9)})
    assert sweep.run_name({}) == "default" and sweep.run_name({"x": ".hidden"})[0] not in ".-"
    with pytest.raises(ValueError, match="both give the run name 'cell=lstm'"):
        sweep.expand(str(CONFIG), [{"model.cell": "lstm"}, {"model.cell": "lstm"}])


def test_overrides_reach_the_config():
    run = next(r for r in sweep.load_sweep(str(CONFIG)).runs if "softmax" in r.name and r.seed == 2)
    config = run.load_config()
    assert config.model.cell == "time_aware" and config.seed == 2
    assert (config.model.attention.normaliser, config.model.attention.window) == ("softmax", 64)
    with pytest.raises(ValueError, match="'model.cel'.*no field 'cel'.*'cell'"):
        sweep.expand(str(CONFIG), [{"model.cel": "lstm"}])
    with pytest.raises(ValueError, match="model.d_hidden='wide'"):
        sweep.expand(str(CONFIG), [{"model.d_hidden": "wide"}])
    with pytest.raises(ValueError, match="sweep run 'forget_init=chrono'.*chrono_t_max"):  # validated up front
        sweep.expand(str(CONFIG), [{"model.cell_options.forget_init": "chrono"}])


def test_a_set_that_an_arm_overrides_is_an_error_naming_both():
    entries = [{"model.cell": "lstm", "seed": 0}, {"model.cell": "tlstm", "seed": 0}]
    with pytest.raises(ValueError, match=r"--set model.cell='gru' conflicts with run .*arm sets model.cell='lstm'"):
        sweep.expand(str(CONFIG), entries, shared={"model.cell": "gru"})
    # the same value, or a key no arm sets, is fine and stays out of the names
    runs = sweep.expand(str(CONFIG), entries[:1], shared={"model.cell": "lstm", "train.steps": 7})
    assert runs[0].steps == 7 and "steps" not in runs[0].name


def test_replicates_vary_within_an_arm_like_the_seed():
    """Cross-validation folds: one arm (one table row), one run (and name) per fold."""
    entries = [{"config_arg": "smoke", "model.cell": "lstm", "seed": 0, "train.steps": k,
                "replicates": ["train.steps"]} for k in (5, 6)]
    runs = sweep.expand(str(CONFIG), entries)
    assert [r.name for r in runs] == ["smoke,cell=lstm,seed=0,steps=5", "smoke,cell=lstm,seed=0,steps=6"]
    assert {r.arm for r in runs} == {"smoke,cell=lstm"}
    assert all("replicates" not in r.overrides for r in runs) and [r.steps for r in runs] == [5, 6]


def test_an_arm_carries_the_config_s_name_for_it_as_its_label():
    """arms_sweep labels each run with its ARMS key, for reports: the name of an arm whose run
    name ends in a hash; the label is in no run name, override or config."""
    runs = sweep.load_sweep(f"{REPO / 'configs' / 'frequency.py'}:arms=lstm+phased_authors_init,seeds=2").runs
    assert [r.label for r in runs] == ["lstm", "phased_authors_init"] * 2
    assert runs[1].arm != "phased_authors_init" and len(runs[1].arm) > 60  # cut and hashed
    assert all("label" not in r.overrides and "label" not in r.name for r in runs)
    assert runs[1].record()["label"] == "phased_authors_init"
    unlabelled = sweep.expand(str(CONFIG), [{"model.cell": "lstm", "seed": 0}])[0]
    assert (unlabelled.label, unlabelled.record()["label"]) == ("", "cell=lstm")
    with pytest.raises(ValueError, match="sweep label 'x' names two arms, 'cell=lstm' and 'cell=tlstm'"):
        sweep.expand(str(CONFIG), [{"model.cell": c, "seed": 0, "label": "x"} for c in ("lstm", "tlstm")])


def test_the_physionet_cross_validation_sweep_is_arms_by_folds():
    runs = sweep.load_sweep(f"{REPO / 'configs' / 'physionet.py'}:protocol=cv,arms=lstm+grud").runs
    assert len(runs) == 2 * 5 and len({r.arm for r in runs}) == 2
    assert [r.overrides["task.fold"] for r in runs[:5]] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="drop fold="):
        sweep.load_sweep(f"{REPO / 'configs' / 'physionet.py'}:protocol=cv,fold=2")


# (config, its stack's input width): from the task's own model where it builds offline; PhysioNet
# reads the challenge's files, so its width is the 37 variables and their observation mask.
TASK_INPUTS = [("long_lag.py:task=adding", None), ("long_lag.py:task=temporal_order", None),
               ("frequency.py", None), ("reber.py", None), ("forecast.py", None), ("physionet.py", 37 * 2)]


@pytest.mark.parametrize("config_arg, d_in", TASK_INPUTS)
def test_every_task_offers_the_modern_arms_at_lstm_s_parameters(config_arg, d_in):
    """Issue 18's arms beside each task's LSTM arms, named on request, not in the default sweep:
    each at the width (a multiple of mlstm's heads) whose stack's parameter count is nearest
    lstm's on the task's input width."""
    import ml_collections

    from ltf.config_lib import load_config, stack_params
    from ltf.tasks.registry import make_task

    file, _, choices = config_arg.partition(":")
    path = str(REPO / "configs" / file)
    with_choices = lambda extra: f"{path}:{','.join(filter(None, (choices, extra)))}"  # noqa: E731
    if d_in is None:
        d_in = make_task(load_config(with_choices("smoke,cell=lstm"))).model.stack.d_in
    default = sweep.load_sweep(with_choices("seeds=1")).runs
    assert not any(r.overrides.get("model.cell") in ("rglru", "linear_decay", "mlstm") for r in default)
    runs = sweep.load_sweep(with_choices("arms=lstm+rglru+mlstm+griffin,seeds=1")).runs
    base = load_config(with_choices(""))

    def count(overrides, width=None):
        config = ml_collections.ConfigDict(base.to_dict())
        config.update_from_flattened_dict({k: v for k, v in overrides.items() if k.startswith("model.")})
        if width is not None:
            config.model.d_hidden = width
        return stack_params(config.model, d_in)

    target = count(runs[0].overrides)
    for run in runs[1:]:
        width, step = run.overrides["model.d_hidden"], run.overrides.get("model.cell_options.heads", 1)
        gap = abs(count(run.overrides) - target)
        # nearest: a neighbouring width is no closer (at reber's 16 units one step of griffin's
        # width moves its count by ~10%, so no fixed tolerance would hold everywhere)
        assert gap <= min(abs(count(run.overrides, w) - target) for w in (width - step, width + step)), run.name


def test_match_width_keeps_the_modern_arms_at_the_config_s_width():
    """match=width: every arm at the config's model.d_hidden (forecast's 64 units), where
    match=params would make rglru a thousand units wide on its one input; a bad value is named."""
    path = str(REPO / "configs" / "forecast.py")
    by_params = sweep.load_sweep(f"{path}:arms=lstm+rglru+mlstm,seeds=1").runs
    by_width = sweep.load_sweep(f"{path}:arms=lstm+rglru+mlstm,seeds=1,match=width").runs
    assert by_params[1].overrides["model.d_hidden"] > 500
    assert [r.overrides.get("model.cell") for r in by_width] == ["lstm", "rglru", "mlstm"]
    assert not any("model.d_hidden" in r.overrides for r in by_width)
    assert by_width[2].overrides["model.cell_options.heads"] == 4
    with pytest.raises(ValueError, match="match='size'"):
        sweep.load_sweep(f"{path}:arms=rglru,match=size")
    with pytest.raises(ValueError, match="4 heads, which do not divide the config's model.d_hidden=110"):
        sweep.load_sweep(f"{REPO / 'configs' / 'frequency.py'}:arms=mlstm,match=width")  # 110 units


def test_seed_templates_hold_at_the_name_limit_and_past_it():
    """An arm whose names sit just under MAX_NAME still groups its seeds (the template is read from
    the run's own name); past it, the hash covers all but the seed, which stays at the end, so the
    seeds of a long-named arm share one template whatever their number of digits."""
    pad = "v" * (sweep.MAX_NAME - len("cell=lstm,d_embed=,seed=0"))
    runs = sweep.expand(str(CONFIG), [{"config_arg": "smoke", "model.cell": "lstm", "seed": s} for s in (0, 1)])
    assert [sweep.seed_template(r) for r in runs] == ["smoke,cell=lstm,seed={seed}"] * 2
    near = sweep.Run(name=f"cell=lstm,d_embed={pad},seed=0", arm=f"cell=lstm,d_embed={pad}", config=str(CONFIG),
                     config_arg="", overrides={"model.cell": "lstm", "model.d_embed": pad, "seed": 0}, steps=0)
    assert len(near.name) == sweep.MAX_NAME and sweep.run_name({**near.overrides}) == near.name
    assert sweep.seed_template(near) == near.name[:-1] + "{seed}"  # a 9-digit stand-in seed would cut it

    def long_run(seed, pad=pad + "vv"):
        overrides = {"model.cell": "lstm", "model.d_embed": pad, "seed": seed}
        return sweep.Run(name=sweep.run_name(overrides), arm="", config=str(CONFIG), config_arg="",
                         overrides=overrides, steps=0)

    names = [long_run(s).name for s in (0, 7, 12, 4_000_000_000)]
    assert all(len(n) <= sweep.MAX_NAME for n in names) and len(set(names)) == 4
    assert [n.rpartition(",seed=")[2] for n in names] == ["0", "7", "12", "4000000000"]
    templates = {sweep.seed_template(long_run(s)) for s in (0, 7, 12, 4_000_000_000)}
    assert len(templates) == 1 and None not in templates
    assert long_run(0, pad + "vw").name != names[0]  # the hash still tells apart what the cut drops
    assert sweep.legacy_run_name(long_run(0).overrides) not in names  # the old name hashed the seed
    assert sweep.legacy_run_name(near.overrides) == near.name  # names under the limit never changed
    seed_first = {"seed": 0, "model.cell": "lstm", "model.d_embed": pad + "vv"}
    assert sweep.run_name(seed_first) == sweep.legacy_run_name(seed_first)
