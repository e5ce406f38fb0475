"""MetricWriter, read_metrics and ProgressBar: strict JSON, TensorBoard records, resumed runs."""

import io
import json
import math
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from ltf.writers import MetricWriter, ProgressBar, read_metrics


def strict_loads(line):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(line, parse_constant=refuse)


def read_tensorboard_scalars(logdir):
    """{tag: [(step, value)]} from the event files under logdir, parsed from the TFRecord framing
    (u64 length, u32 masked crc32c, data, u32 masked crc32c), checksums checked, with tensorboardX's
    own protos and crc32c (no TensorFlow or tensorboard package needed)."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    scalars = {}
    files = sorted(logdir.glob("events.out.tfevents.*"))
    assert files, f"no event file under {logdir}"
    for path in files:
        raw, pos = path.read_bytes(), 0
        while pos < len(raw):
            header = raw[pos:pos + 8]
            (length,), (header_crc,) = struct.unpack("<Q", header), struct.unpack("<I", raw[pos + 8:pos + 12])
            assert header_crc == masked(header)
            data = raw[pos + 12:pos + 12 + length]
            assert struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])[0] == masked(data)
            pos += 16 + length
            event = Event.FromString(data)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_jsonl_is_strict_json_with_non_finite_as_strings(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False, console=False) as writer:
        writer.write_scalars(1, {"loss": 2.5, "lr": np.float32(1e-3), "grad_norm": jnp.asarray(0.5), "tokens": 640})
        writer.write_scalars(2, {"loss": math.nan, "grad_norm": math.inf, "update_norm": -math.inf})
        writer.write_scalars(2, {"loss": 1.25}, split="validation")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [strict_loads(line) for line in lines]
    assert records[0] == {"step": 1, "split": "train", "loss": 2.5, "lr": pytest.approx(1e-3), "grad_norm": 0.5,
                          "tokens": 640}
    assert records[1] == {"step": 2, "split": "train", "loss": "nan", "grad_norm": "inf", "update_norm": "-inf"}
    back = read_metrics(tmp_path, split="train")
    assert math.isnan(back[1]["loss"]) and back[1]["grad_norm"] == math.inf and back[1]["update_norm"] == -math.inf
    assert read_metrics(tmp_path, split="validation") == [{"step": 2, "split": "validation", "loss": 1.25}]


def test_rejects_what_is_not_a_number(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False, console=False) as writer:
        with pytest.raises(TypeError, match="scalar 'name' at step 3"):
            writer.write_scalars(3, {"name": "adam"})
        with pytest.raises(ValueError, match="reserved"):
            writer.write_scalars(3, {"step": 3.0})


def test_tensorboard_event_file_holds_the_scalars(tmp_path):
    with MetricWriter(tmp_path, console=False) as writer:
        writer.write_scalars(10, {"loss": 2.5, "lr": 0.125})
        writer.write_scalars(20, {"loss": 2.0})
        writer.write_scalars(20, {"loss": 3.0}, split="validation")
    scalars = read_tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars["train/loss"] == [(10, 2.5), (20, 2.0)]
    assert scalars["train/lr"] == [(10, 0.125)]
    assert scalars["validation/loss"] == [(20, 3.0)]


def test_console_line(tmp_path, capsys):
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(7, {"loss": 2.5, "tokens": 12})
    assert "step 7 train: loss=2.5  tokens=12" in capsys.readouterr().out


def test_read_metrics_tolerates_a_cut_last_line_and_resolves_a_resumed_run(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False, console=False) as writer:
        for step in (10, 20, 30, 40):
            writer.write_scalars(step, {"loss": float(step)})
        writer.write_scalars(20, {"loss": 0.5}, split="validation")
        writer.write_scalars(40, {"loss": 0.4}, split="validation")
        writer.write_scalars(50, {"loss": 50.0})
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text()[:-12])  # the run crashed while writing step 50
    assert [r["step"] for r in read_metrics(tmp_path, split="train")] == [10, 20, 30, 40]

    # resumed from a checkpoint at step 20: logs steps 30 and 40 again, the second time differently
    with MetricWriter(tmp_path, tensorboard=False, console=False, resume_step=20) as writer:
        writer.write_scalars(30, {"loss": -30.0})
        writer.write_scalars(30, {"grad_norm": 1.0})  # a second call at the same step merges
    lines = path.read_text().splitlines()
    assert lines[-2].startswith('{"step": 30') and strict_loads(lines[-1])["grad_norm"] == 1.0
    with pytest.warns(UserWarning, match="not valid JSON"):  # the cut line is now in the middle
        train = read_metrics(tmp_path, split="train")
        validation = read_metrics(tmp_path, split="validation")
    assert train == [{"step": 10, "split": "train", "loss": 10.0}, {"step": 20, "split": "train", "loss": 20.0},
                     {"step": 30, "split": "train", "loss": -30.0, "grad_norm": 1.0}]
    # validation was not logged again, so the record at 40 (from the abandoned stretch) stays
    assert [r["step"] for r in validation] == [20, 40]


def test_read_metrics_of_a_fresh_workdir_is_empty(tmp_path):
    assert read_metrics(tmp_path) == []


def test_write_config_pretty_sorted_and_replaced(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False, console=False) as writer:
        writer.write_config({"opt": {"lr": 1e-3, "betas": (0.9, 0.99)}, "model": {"cell": "lstm", "dtype": np.float32},
                             "seed": np.int64(0), "eps": math.inf})
        text = (tmp_path / "config.json").read_text()
        config = strict_loads(text)
        assert config == {"eps": "inf", "model": {"cell": "lstm", "dtype": str(np.float32)},
                          "opt": {"betas": [0.9, 0.99], "lr": 0.001}, "seed": 0}
        assert text.index('"eps"') < text.index('"model"') < text.index('"opt"') and '\n  "model": {' in text
        writer.write_config({"seed": 1})
        assert strict_loads((tmp_path / "config.json").read_text()) == {"seed": 1}
        assert not list(tmp_path.glob("*.tmp"))


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("file, enabled, shown", [(io.StringIO(), True, False), (FakeTerminal(), False, False),
                                                  (FakeTerminal(), True, True)])
def test_progress_bar_only_on_a_terminal_when_enabled(file, enabled, shown):
    bar = ProgressBar(total=100, initial=40, enabled=enabled, file=file, mininterval=0)
    bar.update(50, loss=2.34567, tokens_per_s=12345.6)
    bar.update(60, loss=2.0)
    assert bar.disabled is not shown
    bar.close()
    out = file.getvalue()
    if shown:
        assert "60/100" in out and "loss=2.0000, tok/s=12,346" in out  # the last values of each
    else:
        assert out == ""
