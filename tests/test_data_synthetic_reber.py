"""Reber / ERG / CERG: strings, targets and streams against an automaton written here.

The automaton and the regular expressions below are written from the grammar's diagram in
Gers, Schmidhuber & Cummins (2000), independently of ltf.data.synthetic.reber's graph.
"""

import json
import re

import numpy as np
import pytest

from ltf.data.synthetic import reber

# The Reber grammar as a regular expression: after the B, either T S* X then (S, or X and the
# node-2 loop), or P and the node-2 loop; node 2 loops through T* V P X and leaves by V (PS | V).
_NODE2 = r"(?:T*VPX)*T*V(?:PS|V)"
REBER_RE = re.compile(rf"B(?:TS*X(?:S|X{_NODE2})|P{_NODE2})E")
ERG_RE = re.compile(rf"B(?:T{REBER_RE.pattern}T|P{REBER_RE.pattern}P)E")

# Arcs "node symbol node" of the diagram; "a" waits for B, "z" has read the E.
_ARCS = "a B 0, 0 T 1, 0 P 2, 1 S 1, 1 X 3, 2 T 2, 2 V 4, 3 X 2, 3 S 5, 4 P 3, 4 V 5, 5 E z"
REBER_DFA = {}
for _arc in _ARCS.split(", "):
    _src, _sym, _dst = _arc.split()
    REBER_DFA.setdefault(_src, {})[_sym] = _dst


class ErgAutomaton:
    """Reads a CERG stream symbol by symbol; `allowed()` is the set the grammar allows next."""

    def __init__(self):
        self.phase, self.branch, self.node = "B", None, None  # phase: which outer symbol is due

    def allowed(self) -> set[str]:
        if self.phase == "B":
            return {"B"}
        if self.phase == "branch":
            return {"T", "P"}
        if self.phase == "inner":
            return set(REBER_DFA[self.node])
        if self.phase == "close":
            return {self.branch}
        return {"E"}  # phase "E"

    def read(self, sym: str) -> None:
        if sym not in self.allowed():
            raise AssertionError(f"{sym} not allowed in phase {self.phase}, node {self.node}")
        if self.phase == "B":
            self.phase = "branch"
        elif self.phase == "branch":
            self.phase, self.branch, self.node = "inner", sym, "a"
        elif self.phase == "inner":
            self.node = REBER_DFA[self.node][sym]
            if self.node == "z":
                self.phase = "close"
        elif self.phase == "close":
            self.phase = "E"
        else:
            self.phase = "B"


def independent_targets(stream: str) -> list[set[str]]:
    auto, sets = ErgAutomaton(), []
    for sym in stream:
        auto.read(sym)
        sets.append(auto.allowed())
    return sets


def as_sets(targets_Nx7) -> list[set[str]]:
    return [{reber.SYMBOLS[i] for i in np.flatnonzero(row)} for row in np.asarray(targets_Nx7)]


def rows_of(batches, key="inputs"):
    """Per row, the symbols of several consecutive windows concatenated."""
    return ["".join(reber.decode(np.concatenate([b[key][r] for b in batches]).argmax(-1)))
            for r in range(batches[0][key].shape[0])]


def test_reber_strings_are_accepted_by_the_regex():
    rng = np.random.default_rng(0)
    strings = [reber.sample_reber_string(rng) for _ in range(500)]
    assert all(REBER_RE.fullmatch(s) for s in strings)
    assert len(set(strings)) > 50  # not one string over and over
    for bad in ["BTXE", "BTSSE", "BPVE", "BTXSEE", "TXSE", "BPVVX"]:
        assert not REBER_RE.fullmatch(bad)


def test_erg_strings_are_accepted_and_embed_the_same_branch_symbol():
    rng = np.random.default_rng(1)
    for _ in range(500):
        s = reber.sample_erg_string(rng)
        assert ERG_RE.fullmatch(s), s
        assert s[1] in "TP" and s[-2] == s[1]
        assert REBER_RE.fullmatch(s[2:-2])


def test_next_symbol_sets_are_the_automatons():
    rng = np.random.default_rng(2)
    stream = "".join(reber.sample_erg_string(rng) for _ in range(200))
    assert as_sets(reber.next_symbol_sets(stream)) == independent_targets(stream)
    # The long-lag target: after the inner E only the branch symbol is allowed.
    sets = as_sets(reber.next_symbol_sets("BTBTXSETEBPBPVVEPE"))
    assert sets[6] == {"T"} and sets[15] == {"P"} and sets[7] == {"E"} and sets[8] == {"B"}


def test_next_symbol_sets_of_plain_reber_strings():
    sets = as_sets(reber.next_symbol_sets("BTXSEBPVVE", embedded=False))
    assert sets == [{"T", "P"}, {"S", "X"}, {"X", "S"}, {"E"}, {"B"},
                    {"T", "P"}, {"T", "V"}, {"P", "V"}, {"E"}, {"B"}]


@pytest.mark.parametrize("bad", ["BTBTXSEPE", "BTBTXXE", "TBTXSETE", "BTBTXSETT"])
def test_next_symbol_sets_reject_invalid_streams(bad):
    with pytest.raises(ValueError, match="not allowed"):
        reber.next_symbol_sets(bad)


def test_branch_probabilities_are_one_half():
    """Every two-way choice of the grammar goes each way with probability 0.5.

    Counted with the automaton here over 3,000 ERG strings (about 20,000 choices); each
    fraction must be within 5 standard errors of 0.5, which at this fixed seed cannot flake.
    """
    rng = np.random.default_rng(3)
    first, total = {}, {}  # per choice point: how often the first arc (alphabetical) was taken
    for _ in range(3000):
        auto = ErgAutomaton()
        for sym in reber.sample_erg_string(rng):
            options = sorted(auto.allowed())
            if len(options) == 2:
                key = (auto.phase, auto.node)
                total[key] = total.get(key, 0) + 1
                first[key] = first.get(key, 0) + (sym == options[0])
            auto.read(sym)
    assert set(total) == {("branch", None)} | {("inner", n) for n in "01234"}
    for key, n in total.items():
        assert abs(first[key] / n - 0.5) < 5 * np.sqrt(0.25 / n), (key, first[key], n)
    assert total[("branch", None)] == 3000


def test_cerg_windows_continue_one_valid_stream_per_row():
    it = reber.cerg_batches(4, 700, seed=5)  # 700 steps: windows cross chunks of 64 strings
    batches = [next(it) for _ in range(3)]
    b0 = batches[0]
    assert b0["inputs"].shape == (4, 700, 7) and b0["inputs"].dtype == np.float32
    assert b0["targets"].shape == (4, 700, 7) and b0["mask"].shape == (4, 700)
    assert b0["dt"].shape == (4, 700, 1) and np.all(b0["dt"] == 1) and np.all(b0["mask"] == 1)
    assert "reset_T" not in b0
    # Reset only at the very start: never inside a row, never in a later window.
    assert b0["reset"].all() and not any(b["reset"].any() for b in batches[1:])
    streams = rows_of(batches)
    assert len(set(streams)) == 4  # every row its own stream
    for r, stream in enumerate(streams):
        targets = np.concatenate([b["targets"][r] for b in batches])
        assert as_sets(targets) == independent_targets(stream)  # raises on an invalid symbol
        assert stream.count("E") > 100  # many strings, no reset between them


def test_erg_batches_mark_every_string_start():
    cerg = [next(it) for it in [reber.cerg_batches(3, 50, seed=7)] for _ in range(4)]
    erg = [next(it) for it in [reber.erg_batches(3, 50, seed=7)] for _ in range(4)]
    for c, e in zip(cerg, erg):  # the same streams for both arms
        np.testing.assert_array_equal(c["inputs"], e["inputs"])
        np.testing.assert_array_equal(c["targets"], e["targets"])
        np.testing.assert_array_equal(e["reset"], e["reset_T"][:, 0])
        assert e["reset_T"].shape == (3, 50) and e["reset_T"].dtype == bool
    for r, stream in enumerate(rows_of(erg)):
        starts = np.concatenate([b["reset_T"][r] for b in erg])
        auto, expected = ErgAutomaton(), []
        for sym in stream:
            expected.append(auto.phase == "B")  # the outer B of a new string is due
            auto.read(sym)
        np.testing.assert_array_equal(starts, expected)
    assert erg[0]["reset"].all()


def test_state_resumes_the_exact_stream():
    it = reber.erg_batches(3, 97, seed=11)
    for _ in range(9):  # 873 steps: past the first chunk of every row
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(3)]
    resumed = reber.erg_batches(3, 97, seed=11)
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(3)]):
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(want[key], got[key])
    with pytest.raises(ValueError):
        resumed.set_state({"batch": 0})


def test_seeds_and_batch_sizes():
    a = next(reber.cerg_batches(2, 40, seed=0))["inputs"]
    b = next(reber.cerg_batches(4, 40, seed=0))["inputs"]
    c = next(reber.cerg_batches(2, 40, seed=1))["inputs"]
    np.testing.assert_array_equal(a, b[:2])  # row r's stream does not depend on the batch size
    assert not np.array_equal(a, c)


def test_step_correct_uses_the_049_criterion():
    targets = np.zeros((1, 3, 7), np.float32)
    targets[0, :, [1, 2]] = 1.0  # {T, P} at every step
    outputs = np.full((1, 3, 7), 0.48, np.float32)
    outputs[0, 0, [1, 2]] = 0.52   # every error 0.48: correct
    outputs[0, 1, [1, 2]] = [0.52, 0.50]  # P's error is 0.50: wrong
    outputs[0, 2, [1, 2]] = 0.9
    outputs[0, 2, 6] = 0.495       # E's error 0.495 on a 0 target: wrong
    np.testing.assert_array_equal(reber.step_correct(outputs, targets), [[True, False, False]])
    assert reber.step_correct(targets, targets).all()


def test_error_free_length_and_tracker():
    correct = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]], bool)
    np.testing.assert_array_equal(reber.error_free_length(correct), [2, 4, 0])
    tracker = reber.ErrorFreeLength(3)
    tracker.update(np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1]], bool))
    tracker.update(np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], bool))
    lengths = tracker.update(np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1]], bool))
    np.testing.assert_array_equal(lengths, [9, 4, 1])
    np.testing.assert_array_equal(tracker.failed, [False, True, True])


def test_rate_run():
    assert reber.rate_run([100_000] * 10) == "perfect"
    assert reber.rate_run([100_000] * 9 + [5]) == "good"
    assert reber.rate_run([1_000] * 10) == "bad"  # the paper's "over 1,000"
    assert reber.rate_run([1_001] * 10) == "good"
