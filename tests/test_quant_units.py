"""Unit tests of the tuner's pieces that need no model: config hashing, criterion, history, front."""

from __future__ import annotations

import json
import math

import pytest

from caloforge.errors import UserError
from caloforge.quant import Config, Criterion
from caloforge.quant.history import HistoryWriter, read_history
from caloforge.quant.strategies import available, get_strategy
from caloforge.quant.tuner import TrialRecord, pareto_front


def test_config_key_is_canonical():
    a = Config({"b": "int8", "a": "fp32"}, {"preset": "performance", "bias_correction": False})
    b = Config({"a": "fp32", "b": "int8"}, {"bias_correction": False, "preset": "performance"})
    assert a.key() == b.key() and len(a.key()) == 16
    assert a.with_precision("b", "fp32").key() != a.key()
    assert Config.from_json(json.loads(json.dumps(a.to_json()))).key() == a.key()
    with pytest.raises(ValueError):
        Config({"a": "int4"})
    with pytest.raises(KeyError):
        a.with_precision("zz", "fp32")


def test_criterion_lower_is_better_relative_and_absolute():
    rel = Criterion(0.01)
    assert rel.passes(1.009, 1.0) and not rel.passes(1.011, 1.0)
    assert rel.passes(0.5, 1.0)  # better than FP32 always passes
    assert not rel.passes(math.nan, 1.0)
    ab = Criterion(0.05, relative=False)
    assert ab.passes(0.149, 0.1) and not ab.passes(0.151, 0.1)


def test_criterion_higher_is_better():
    c = Criterion(0.01, higher_is_better=True)
    assert c.threshold(0.9) == pytest.approx(0.891)
    assert c.passes(0.8911, 0.9) and not c.passes(0.89, 0.9) and c.passes(0.95, 0.9)
    assert c.better(0.9, 0.8) and not c.better(0.8, 0.9)
    # negative baseline: the allowed loss uses |baseline|
    assert Criterion(0.1).passes(-0.95, -1.0) and not Criterion(0.1).passes(-0.85, -1.0)


def test_history_skips_torn_and_corrupt_lines(tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as h:
        h.append({"kind": "trial", "key": "a", "metric": 1.0})
        h.append({"kind": "trial", "key": "b", "metric": float("nan")})
    with open(path, "ab") as fh:  # a kill mid-write: half a line, no newline
        fh.write(b'{"kind": "trial", "key": "c", "met')
    with pytest.warns(RuntimeWarning, match="torn"):
        records = read_history(path)
    assert [r["key"] for r in records] == ["a", "b"]
    assert records[1]["metric"] is None  # NaN is stored as null
    with HistoryWriter(path) as h:  # appending after a torn tail starts a fresh line
        h.append({"kind": "trial", "key": "d"})
    with pytest.warns(RuntimeWarning):
        records = read_history(path)
    assert [r["key"] for r in records] == ["a", "b", "d"]
    path.write_bytes(b"\x00\xff garbage\n[1, 2]\n")
    with pytest.warns(RuntimeWarning):
        assert read_history(path) == []
    assert read_history(tmp_path / "missing.jsonl") == []


def test_pareto_front():
    cfg = Config({"a": "int8"})

    def rec(metric, latency):
        return TrialRecord("trial", f"{metric}-{latency}", cfg, metric=metric, latency_s=latency)

    trials = [rec(1.0, 1.0), rec(2.0, 0.5), rec(1.5, 1.5), rec(0.5, 3.0), rec(2.0, 0.6)]
    front = pareto_front(trials, Criterion())
    assert [(t.metric, t.latency_s) for t in front] == [(2.0, 0.5), (1.0, 1.0), (0.5, 3.0)]
    front_hib = pareto_front(trials, Criterion(higher_is_better=True))
    assert [(t.metric, t.latency_s) for t in front_hib] == [(2.0, 0.5)]


def test_strategy_registry():
    assert {"basic", "ranked", "pareto"} <= set(available())
    assert get_strategy("ranked").name == "ranked"
    with pytest.raises(UserError, match="unknown strategy"):
        get_strategy("nope")


def _cli_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content", [b"\x8a\x01garbage" + bytes(range(256)) * 8, b"hello\n"],
                         ids=["binary", "text"])
def test_cli_garbage_model_is_one_line_and_leaves_no_output(tmp_path, capsys, content):
    from caloforge.cli import main

    model = tmp_path / "garbage.onnx"
    model.write_bytes(content)
    out = tmp_path / "tuned"
    assert main(["quantize", "--model", str(model), "--output", str(out), "--quiet"]) == 2
    assert f"{model}: not a valid ONNX model" in _cli_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.onnx"]


@pytest.mark.parametrize("args, needle", [
    (["--tolerance", "nan"], "--tolerance nan: must be a finite number >= 0"),
    (["--tolerance=-0.1"], "--tolerance -0.1: must be a finite number >= 0"),
    (["--timeout", "nan"], "--timeout nan: must be a positive number of seconds"),
    (["--timeout", "0"], "--timeout 0.0: must be a positive number of seconds"),
])
def test_cli_bad_numbers_exit_2(tmp_path, capsys, args, needle):
    from caloforge.cli import main

    assert main(["quantize", *args, "--output", str(tmp_path / "out"), "--quiet"]) == 2
    assert needle in _cli_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_cli_output_under_a_regular_file_and_model_directory(tmp_path, capsys):
    from caloforge.cli import main

    blocker = tmp_path / "regular"
    blocker.write_text("x")
    assert main(["quantize", "--output", str(blocker), "--quiet"]) == 2
    assert f"{blocker}: exists and is not a directory" in _cli_error(capsys)
    assert main(["quantize", "--output", str(blocker / "sub"), "--quiet"]) == 2
    assert f"{blocker / 'sub'}: {blocker} is not a directory" in _cli_error(capsys)
    model_dir = tmp_path / "model_dir"
    model_dir.mkdir()
    assert main(["quantize", "--model", str(model_dir), "--output", str(tmp_path / "o")]) == 2
    assert f"{model_dir}: is a directory" in _cli_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_dir", "regular"]


def test_criterion_slack_is_direction_free():
    low = Criterion(0.1)  # threshold 1.1 for a baseline of 1
    assert low.slack(1.0, 1.0) == pytest.approx(0.1) and low.slack(1.2, 1.0) == pytest.approx(-0.1)
    high = Criterion(0.1, higher_is_better=True)  # threshold 0.9
    assert high.slack(1.0, 1.0) == pytest.approx(0.1) and high.slack(0.8, 1.0) == pytest.approx(-0.1)
    assert low.slack(math.nan, 1.0) == -math.inf
    for c in (low, high):  # slack >= 0 exactly when the criterion passes
        for m in (0.5, 0.95, 1.05, 1.15, 2.0):
            assert (c.slack(m, 1.0) >= 0) == c.passes(m, 1.0)


def _drive(strategy, slack_of):
    """Run ``strategy.choose_params`` answering each all-INT8 request with ``slack_of(params)``."""
    from caloforge.quant.strategies import Outcome

    gen = strategy.choose_params()
    asked = []
    try:
        request = next(gen)
        while True:
            asked.append(dict(request.config.params))
            slack = slack_of(request.config.params)
            request = gen.send(Outcome(request.config, "trial", metric=1.0 - slack,
                                       passed=slack >= 0, slack=slack))
    except StopIteration as stop:
        return asked, stop.value


def test_choose_params_keeps_the_set_with_most_slack_and_stops_at_a_pass():
    from caloforge.quant.params import DEFAULT_PARAM_SETS, param_sets
    from caloforge.quant.space import Layer
    from caloforge.quant.strategies import SearchSpace
    from caloforge.quant.strategies.ranked import RankedStrategy

    sets = param_sets(None)
    assert sets == [dict(p) for p in DEFAULT_PARAM_SETS]
    space = SearchSpace([Layer("a", "Convolution", 1.0), Layer("b", "MatMul", 1.0)], param_sets=sets)
    # all fail: every set is tried, the least bad one is kept
    slacks = {describe_key(p): -0.3 + 0.05 * i for i, p in enumerate(sets)}
    slacks[describe_key(sets[2])] = -0.01
    strategy = RankedStrategy(space)
    asked, best = _drive(strategy, lambda p: slacks[describe_key(p)])
    assert asked == sets
    assert dict(best.config.params) == sets[2] == strategy.params
    assert set(best.config.precisions.values()) == {"int8"}
    # the second set passes: the search stops there (nothing is faster than all-INT8)
    strategy = RankedStrategy(space)
    asked, best = _drive(strategy, lambda p: 0.01 if p == sets[1] else -0.2)
    assert asked == sets[:2] and strategy.params == sets[1]
    # ties go to the earlier set
    strategy = RankedStrategy(space)
    asked, best = _drive(strategy, lambda p: -0.1)
    assert strategy.params == sets[0]


def describe_key(params):
    return json.dumps(dict(params), sort_keys=True)


def test_parameter_sets_are_checked_and_restricted():
    from caloforge.quant.params import candidate_sets, normalize, param_sets

    assert normalize({"range": "histogram"})["preset"] == "performance"
    with pytest.raises(UserError, match="range estimator"):
        normalize({"range": "percentile"})
    with pytest.raises(UserError, match="preset"):
        param_sets([{"preset": "fast"}])
    assert {p["preset"] for p in candidate_sets(preset="mixed")} == {"mixed"}
    assert {p["range"] for p in candidate_sets(range_estimator="histogram")} == {"histogram"}
    assert candidate_sets("mixed", "mean_minmax", True) == [
        {"preset": "mixed", "range": "mean_minmax", "bias_correction": True}]
    assert len(param_sets([{"range": "minmax"}, {"range": "minmax"}])) == 1  # duplicates dropped
