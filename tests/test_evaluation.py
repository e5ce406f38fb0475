"""ltf/evaluation.py and scripts/evaluate.py: a trained run evaluated again reproduces its logged
metrics; other text is encoded with the run's vocabulary; checkpoints and splits are named."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from ltf import evaluation, train
from ltf.config_lib import load_config
from ltf.data.corpora import encode_with_vocab
from ltf.data.vocab import Vocab
from ltf.writers import read_metrics

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A smoke run of the char LM on a folder of train/valid/test text files."""
    base = tmp_path_factory.mktemp("evaluation")
    data = base / "data"
    data.mkdir()
    for name, text in {"train.txt": TEXT, "valid.txt": TEXT[::-1], "test.txt": TEXT.upper()}.items():
        (data / name).write_text(text)
    config = load_config(str(REPO / "configs" / "tlstm_lm.py") + ":smoke,cell=lstm")
    config.data.corpus, config.data.data_dir = "text", str(data)
    train.train_and_evaluate(config, base / "run")
    return base / "run", data, config


def test_the_best_checkpoint_reproduces_the_logged_metrics(run):
    workdir, _, config = run
    best = min((r for r in read_metrics(workdir, split="validation")), key=lambda r: r["loss"])
    assert evaluation.pick_step(workdir) == best["step"]
    results = evaluation.evaluate_run(workdir, splits=["validation"], max_batches=config.train.eval_max_batches)
    np.testing.assert_allclose(results["validation"]["loss"], best["loss"], rtol=1e-6)
    records = [json.loads(line) for line in (workdir / evaluation.RECORDS_FILE).read_text().splitlines()]
    assert records[-1]["step"] == best["step"] and records[-1]["split"] == "validation"


def test_checkpoints_are_named_by_best_latest_or_step(run):
    workdir, _, config = run
    assert evaluation.pick_step(workdir, "latest") == config.train.steps
    assert evaluation.pick_step(workdir, "3") == 3
    with pytest.raises(ValueError, match=r"checkpoint '5'.*\[3, 6\]"):
        evaluation.pick_step(workdir, "5")
    with pytest.raises(ValueError, match="split 'dev': not in"):
        evaluation.evaluate_run(workdir, splits=["dev"])


def test_a_folder_read_with_the_runs_vocabulary_gives_the_runs_own_numbers(run):
    workdir, data, _ = run
    own = evaluation.evaluate_run(workdir, splits=["validation", "test"])
    other = evaluation.evaluate_run(workdir, splits=["validation", "test"], data_dir=data)
    for split in own:
        np.testing.assert_allclose(other[split]["loss"], own[split]["loss"], rtol=1e-6)


def test_a_file_is_one_split_and_unknown_characters_become_unk(run, tmp_path):
    workdir, _, _ = run
    vocab = Vocab.load(workdir / "vocab.json")
    (tmp_path / "essay.txt").write_text("the dog! jumps?")
    corpus = encode_with_vocab(vocab, "text", tmp_path / "essay.txt")
    assert list(corpus.splits) == ["file"] and "2 unknown" in corpus.description
    assert vocab.decode(corpus.splits["file"]) == "the dog<unk> jumps<unk>"
    results = evaluation.evaluate_run(workdir, data_dir=tmp_path / "essay.txt")
    assert list(results) == ["file"] and np.isfinite(results["file"]["bpc"])


def test_batch_size_one_reads_a_split_as_one_stream(run):
    """Batches of one row, the state carried: the same as the model over the whole split at once."""
    import jax
    import jax.numpy as jnp
    import optax

    from ltf.runs import load_run

    workdir, _, _ = run
    loaded = load_run(workdir, step=evaluation.pick_step(workdir))
    ids = jnp.asarray(loaded.task.corpus.splits["validation"])[None]
    logits, _ = jax.jit(loaded.task.model.apply)(loaded.params, ids[:, :-1])
    whole = float(optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean())
    result = evaluation.evaluate_run(workdir, splits=["validation"], batch_size=1)
    np.testing.assert_allclose(result["validation"]["loss"], whole, rtol=1e-5)


def test_other_data_is_for_language_models_only(tmp_path):
    config = load_config(str(REPO / "configs" / "reber.py") + ":smoke")
    with pytest.raises(ValueError, match="for language models; this run's task is 'cerg'"):
        evaluation._task(config, tmp_path, tmp_path)


@pytest.mark.slow
def test_the_script_prints_and_records(run):
    workdir, _, _ = run
    out = subprocess.run([sys.executable, "scripts/evaluate.py", f"--workdir={workdir}", "--split=test",
                          "--checkpoint=latest"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("test: loss=") and "evaluations.jsonl" in out.stdout
    missing = subprocess.run([sys.executable, "scripts/evaluate.py", "--workdir=/nonexistent/run"],
                             capture_output=True, text=True, cwd=REPO, timeout=300)
    assert missing.returncode != 0 and "no config.json" in missing.stderr


@pytest.mark.slow
def test_overrides_lengthen_cerg_s_test_streams_and_are_recorded(tmp_path):
    """data.eval_batches set for one evaluation continues the same test streams: no stream's
    error-free length can shrink (an error in the first windows stays where it was), and the
    streams are longer; the record names the override; an unknown field is named."""
    config = load_config(str(REPO / "configs" / "reber.py") + ":smoke")
    train.train_and_evaluate(config, tmp_path / "run")
    windows, length = config.data.eval_batches, config.data.seq_len
    short = evaluation.evaluate_run(tmp_path / "run", splits=["test"])["test"]
    long = evaluation.evaluate_run(tmp_path / "run", splits=["test"],
                                   overrides={"data.eval_batches": 3 * windows})["test"]
    assert long["loss"] != short["loss"]  # other symbols were read
    assert long["error_free_length"] >= short["error_free_length"]
    assert short["error_free_length"] <= windows * length
    records = [json.loads(line) for line in (tmp_path / "run" / evaluation.RECORDS_FILE).read_text().splitlines()]
    assert [r["overrides"] for r in records] == [{}, {"data.eval_batches": 3 * windows}]
    with pytest.raises(ValueError, match="data has no field 'eval_batchez'"):
        evaluation.evaluate_run(tmp_path / "run", overrides={"data.eval_batchez": 1})
