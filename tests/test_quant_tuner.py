"""The tuner end to end on a tiny synthetic Conv3d/Linear model with one INT8-hostile layer.

The model: conv1 -> tanh -> x mask -> conv2 -> tanh -> conv3 -> relu -> linear. The mask
multiplies one voxel by 1e4, so conv2's input has a huge dynamic range: per-tensor INT8
activations wipe out everything but the outlier (output error ~0.8), while conv1, conv3 and
the linear layer quantize fine (error < 0.1). Every strategy must end with conv2 in a float
precision and the three others in INT8.

The metric is the relative L2 distance of the outputs to a fixed noisy target (so the FP32
baseline is ~0.3, not 0): lower is better; 1 - it is the higher-is-better metric.
Latencies of such a tiny model are noise, so these tests pass ``latency_margin=1`` (all
latencies count as equal; the INT8 FLOPs share decides) -- no timing assertions.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from caloforge.quant import FP32, INT8, Config, Criterion, Strategy, read_history, register, tune
from caloforge.quant.strategies import Request

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOSTILE = "/c2/Conv/WithoutBiases"
OTHERS = ("/c1/Conv/WithoutBiases", "/c3/Conv/WithoutBiases", "/fc/Gemm/WithoutBiases")
CRITERION = Criterion(0.1)  # 10% relative: INT8 everywhere but conv2 costs ~2%, conv2 ~200%


def _export_model(path):
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv3d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv3d(8, 8, 3, padding=1)
            self.c3 = torch.nn.Conv3d(8, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8 * 8, 16)
            mask = torch.ones(1, 1, 8, 8, 8)
            mask[..., 0, 0, 0] = 1e4  # the outlier that makes conv2 INT8-hostile
            self.register_buffer("mask", mask)

        def forward(self, x):
            x = torch.tanh(self.c1(x)) * self.mask
            x = torch.tanh(self.c2(x))
            x = torch.relu(self.c3(x))
            return self.fc(x.flatten(1))

    return _onnx_export(Tiny(), (2, 1, 8, 8, 8), path)


def _onnx_export(module, input_shape, path):
    """Export ``module`` (input ``x``, output ``y``, dynamic batch) to ONNX at ``path``."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(*input_shape),), str(path),
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
    return path


class Synthetic:
    """Model path, calibration set and metrics of the tiny model."""

    def __init__(self, tmp):
        import openvino as ov

        self.model = _export_model(tmp / "tiny.onnx")
        rng = np.random.default_rng(0)
        self.calibration = [{"x": rng.standard_normal((2, 1, 8, 8, 8)).astype(np.float32)}
                            for _ in range(6)]
        self.x_eval = rng.standard_normal((8, 1, 8, 8, 8)).astype(np.float32)
        compiled = ov.Core().compile_model(str(self.model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        ref = np.asarray(compiled({"x": self.x_eval})[0], dtype=np.float64)
        noise = rng.standard_normal(ref.shape) * np.linalg.norm(ref) / np.sqrt(ref.size)
        self.target = ref + 0.3 * noise
        self.calls = 0

    def error(self, compiled) -> float:
        self.calls += 1
        y = np.asarray(compiled({"x": self.x_eval})[0], dtype=np.float64)
        return float(np.linalg.norm(y - self.target) / np.linalg.norm(self.target))

    def score(self, compiled) -> float:  # higher is better
        return 1.0 - self.error(compiled)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return Synthetic(tmp_path_factory.mktemp("quant_model"))


def _tune(synth, out, **kw):
    kw.setdefault("criterion", CRITERION)
    kw.setdefault("strategy", "ranked")
    kw.setdefault("evaluate", synth.error)
    kw.setdefault("export_qdq", False)
    kw.setdefault("report", False)
    kw.setdefault("precisions", (INT8, FP32))
    kw.setdefault("confirm_top", 0)
    return tune(synth.model, synth.calibration, output_dir=out, latency_margin=1.0,
                latency_time_s=0.0, **kw)


def _assert_hostile_isolated(result):
    assert result.passed, result.summary()
    prec = result.best.config.precisions
    assert prec[HOSTILE] != INT8
    assert all(prec[name] == INT8 for name in OTHERS), prec
    # what really runs: conv2 in f32, the others on INT8 kernels (runtime graph)
    assert result.best.runtime[HOSTILE] in ("f32", "bf16")
    assert all(result.best.runtime[name] in ("u8", "i8") for name in OTHERS), result.best.runtime


@pytest.mark.parametrize("strategy", ["basic", "ranked", "pareto"])
def test_every_strategy_isolates_the_hostile_layer(synth, tmp_path, strategy):
    result = _tune(synth, tmp_path / strategy, strategy=strategy)
    _assert_hostile_isolated(result)
    assert (tmp_path / strategy / "model.xml").exists() and (tmp_path / strategy / "model.bin").exists()
    if strategy == "pareto":
        assert result.pareto_front and all(t.latency_s for t in result.trials)
    if strategy == "ranked":  # sensitivity probes rank the hostile layer first
        worst = max(result.probes, key=lambda p: p.error)
        assert worst.config.layers_in(INT8) == [HOSTILE]


def test_higher_is_better_metric(synth, tmp_path):
    result = _tune(synth, tmp_path / "hib", evaluate=synth.score,
                   criterion=Criterion(0.05, relative=False, higher_is_better=True))
    _assert_hostile_isolated(result)
    assert result.best.metric >= result.baseline_metric - 0.05


def test_outputs_report_and_qdq(synth, tmp_path):
    import onnx

    out = tmp_path / "full"
    result = _tune(synth, out, export_qdq=True, report=True, confirm_top=4)
    _assert_hostile_isolated(result)
    for name in ("model.xml", "model.bin", "history.jsonl", "best.json", "result.json",
                 "report.md", "report.png"):
        assert (out / name).is_file(), name
    text = (out / "report.md").read_text()
    assert "Per-layer precision" in text and HOSTILE in text and "FLOPs" in text
    # every default parameter set was tried for all-INT8 (none passes: conv2 is hostile)
    assert "sets tried: `performance/minmax`, `performance/histogram`, `mixed/minmax`" in text
    flops = {layer.name: layer.flops for layer in result.layers}  # conv2 is ~60% of the FLOPs
    expected = sum(flops[n] for n in OTHERS) / sum(flops.values())
    assert result.best.int8_share == pytest.approx(expected) and 0.3 < expected < 0.5
    summary = json.loads((out / "result.json").read_text())
    assert summary["passed"] is True and summary["best"]["key"] == result.best.key
    # QDQ ONNX: QuantizeLinear/DequantizeLinear around the INT8 layers, conv2 left float
    assert result.qdq_onnx_path is not None, result.qdq_status
    graph = onnx.load(str(result.qdq_onnx_path)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    conv2 = next(n for n in graph.node if n.name == "/c2/Conv")
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert producers.get(conv2.input[0]) != "DequantizeLinear"
    # the saved IR reloads and runs in the precision it was tuned for
    from caloforge.quant import compile_model

    compiled = compile_model(str(out / "model.xml"))
    assert synth.error(compiled) == pytest.approx(result.best.metric, rel=1e-5)


def test_resume_after_interruption_repeats_no_trial(synth, tmp_path):
    out = tmp_path / "resume"
    seen: list[str] = []

    class Interrupt(Exception):
        pass

    def flaky(compiled):
        if len(seen) == 3:  # FP32 baseline + 2 trials, then "killed"
            raise Interrupt
        seen.append("x")
        return synth.error(compiled)

    with pytest.raises(Interrupt):
        _tune(synth, out, strategy="basic", evaluate=flaky)
    first = [r for r in read_history(out / "history.jsonl") if r["kind"] == "trial"]
    assert len(first) == 2
    with open(out / "history.jsonl", "ab") as fh:  # and the kill tore the last line
        fh.write(b'{"kind": "trial", "key": "dead')

    with pytest.raises(Exception, match="resume"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _tune(synth, out, strategy="basic")  # without --resume nothing is overwritten
    keys_run: list[str] = []
    with pytest.warns(RuntimeWarning, match="torn"):
        result = _tune(synth, out, strategy="basic", resume=True,
                       evaluate=lambda c: (keys_run.append("x"), synth.error(c))[1])
    _assert_hostile_isolated(result)
    with warnings.catch_warnings():  # the torn line stays in the middle of the file
        warnings.simplefilter("ignore", RuntimeWarning)
        records = [r for r in read_history(out / "history.jsonl")
                   if r["kind"] in ("trial", "baseline")]
    trials = [r for r in records if r["kind"] == "trial"]
    keys = {r["key"] for r in trials}
    # a key may appear twice only as a re-timing (same metric, new latency), never re-evaluated
    for key in keys:
        assert len({r["metric"] for r in trials if r["key"] == key}) == 1
    assert {r["key"] for r in first} <= keys
    # every evaluate call of the resumed run is a new trial: the FP32 baseline and the two
    # trials of the interrupted run came from the history
    assert len(keys_run) == result.evaluations_run == len(keys) - 2
    assert len(result.trials) == len(keys)


def test_no_pass_saves_best_by_metric(synth, tmp_path):
    out = tmp_path / "nopass"
    # only one trial allowed: all-INT8, which the hostile layer ruins
    result = _tune(synth, out, max_trials=1, report=True)
    assert not result.passed and result.stop_reason.startswith("trial limit")
    assert result.best is not None and result.best.config.layers_in(FP32) == []
    assert (out / "model.xml").is_file() and (out / "report.md").is_file()
    assert "NO configuration met the criterion" in result.summary()
    # an impossible criterion: nothing passes, the best by metric is kept, no crash
    result = _tune(synth, tmp_path / "impossible", strategy="basic",
                   criterion=Criterion(-0.5, relative=True))
    assert not result.passed and (tmp_path / "impossible" / "model.xml").is_file()
    assert result.best.metric == min(t.metric for t in result.trials)


def test_cli_no_pass_exits_3(synth, tmp_path, monkeypatch, capsys):
    from caloforge.cli import main
    from caloforge.workflows import objective, tune

    def fake_objective(model, reference, **kw):
        return objective.GanObjective(synth.calibration, synth.error, 8, (2.0, 500.0), "toy")

    monkeypatch.setattr(tune, "gan_objective", fake_objective)
    out = tmp_path / "cli"
    # --no-rewrite: the toy model is not a caloforge generator (the runtime rewrite needs one)
    code = main(["quantize", "--model", str(synth.model), "--output", str(out), "--no-rewrite",
                 "--max-trials", "1", "--tolerance", "0.1", "--no-qdq", "--no-bf16", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and "no configuration met the criterion" in err
    assert (out / "model.xml").is_file()
    # resuming with room for more trials finishes and passes (exit 0)
    code = main(["quantize", "--model", str(synth.model), "--output", str(out), "--resume",
                 "--no-rewrite", "--tolerance", "0.1", "--no-qdq", "--no-bf16", "--quiet"])
    assert code == 0


def test_custom_strategy_plugs_into_the_loop(synth, tmp_path):
    @register
    class OnlyHostileFloat(Strategy):
        name = "test-only-hostile"

        def search(self):
            outcome = yield Request(self.uniform(INT8).with_precision(HOSTILE, FP32))
            assert outcome.passed is not None and outcome.metric is not None

    result = _tune(synth, tmp_path / "custom", strategy="test-only-hostile")
    _assert_hostile_isolated(result)
    assert len(result.trials) == 1


def test_bf16_layer_marking(synth):
    """A BF16 layer: model compiled with a bf16 hint, every other node marked to stay f32.

    OpenVINO 2026.4 compiles the per-layer BF16 even on CPUs without native BF16 (the tuner
    offers BF16 by default only where the plugin reports the capability); the runtime graph must
    show the BF16 layer in bf16 and the others on INT8 kernels.
    """
    from caloforge.quant import BF16
    from caloforge.quant.build import KEEP_F32, Builder, compile_model, precision_hint, read_model
    from caloforge.quant.inspect import layer_precisions
    from caloforge.quant.space import find_layers

    model = read_model(str(synth.model))
    layers = find_layers(model)
    config = Config.uniform([layer.name for layer in layers], INT8).with_precision(HOSTILE, BF16)
    built = Builder(model, synth.calibration[:2]).build(config)
    ops = {op.get_friendly_name(): op for op in built.get_ops()}
    assert KEEP_F32 not in ops[HOSTILE].get_rt_info()
    assert all(KEEP_F32 in ops[name].get_rt_info() for name in OTHERS)
    assert precision_hint(built) == "bf16"
    compiled = compile_model(built)
    rt = layer_precisions(compiled, layers, built)
    assert rt[HOSTILE].precision == BF16
    assert all(rt[name].precision == INT8 for name in OTHERS)


def test_ranked_tries_bf16_for_float_layers(synth, tmp_path):
    """With BF16 allowed, ranked tries the FP32 layer in BF16 (kept only if it passes the metric
    and the BF16 output-parity check). Runs anywhere: without BF16 hardware the plugin may run
    it in f32, which the runtime map reports."""
    from caloforge.quant import BF16

    result = _tune(synth, tmp_path / "bf16", precisions=(INT8, BF16, FP32))
    _assert_hostile_isolated(result)
    tried = [t for t in result.trials if t.config.precisions[HOSTILE] == BF16]
    assert tried and tried[-1].note.startswith("bf16")
    # the parity reference (same configuration, BF16 layer in FP32) is measured as a probe for
    # every BF16 candidate that meets the metric
    assert result.criterion.passes(tried[-1].metric, result.baseline_metric)
    assert any(p.note == "bf16 parity reference" for p in result.probes)


def _runs_bf16(trials) -> bool:
    return any("bf16" in t.runtime.values() for t in trials)


def test_bf16_parity_rejects_a_candidate_the_metric_accepts(synth, tmp_path):
    """The tuner's BF16 safety net fires: with a parity limit below the real BF16 rounding
    error (rel. L2 ~1e-3 here), every BF16 candidate is rejected although its metric passes, and
    the tuned model has no BF16 layer. With the default limit (0.05) the same candidates pass."""
    from caloforge.quant import BF16

    strict = _tune(synth, tmp_path / "strict", precisions=(INT8, BF16, FP32), bf16_parity=1e-7)
    tried = [t for t in strict.trials if BF16 in t.config.precisions.values()]
    assert tried
    if not _runs_bf16(tried):
        pytest.skip("this CPU plugin runs no layer in bf16: no BF16 rounding to detect")
    metric_ok = [t for t in tried if strict.criterion.passes(t.metric, strict.baseline_metric)]
    assert metric_ok  # the metric alone would have accepted them
    for t in tried:
        assert t.passed is False and "BF16 parity failed" in t.note
        assert t.limiting == "bf16_parity" and t.slack < 0
    assert any(p.note == "bf16 parity reference" for p in strict.probes)
    assert BF16 not in strict.best.config.precisions.values()
    _assert_hostile_isolated(strict)
    loose = _tune(synth, tmp_path / "loose", precisions=(INT8, BF16, FP32))
    assert any(t.passed for t in loose.trials if BF16 in t.config.precisions.values())


def test_runtime_bf16_falls_back_to_f32_when_parity_fails(monkeypatch):
    """The runtime's BF16 safety net fires: the shipped model's real bf16 error (~5e-3) exceeds
    a parity limit of 1e-6, so the runtime warns and compiles f32 instead; its output is then the
    f32 output, not the bf16 one."""
    import caloforge.ovgraph.precisions as precisions
    from caloforge.runtime import compile_model
    from caloforge.runtime.noise import latent_noise

    z = latent_noise(5, 0, 8, 200)
    e = np.linspace(10.0, 400.0, 8).astype(np.float32)

    def run(g):
        return np.asarray(g.compiled.create_infer_request().infer({"z": z, "energy": e})[0])

    bf16 = compile_model(None, "bf16", streams=1, batch_size=8)
    if bf16.info["bf16_rel_l2_vs_f32"] == 0.0:
        pytest.skip("this CPU runs bf16 exactly as f32: nothing for the parity check to see")
    assert "fallback" not in bf16.info
    f32 = run(compile_model(None, "fp32", streams=1, batch_size=8))
    monkeypatch.setattr(precisions, "BF16_PARITY_MAX_REL_L2", 1e-6)
    with pytest.warns(RuntimeWarning, match="running in f32"):
        fell = compile_model(None, "bf16", streams=1, batch_size=8)
    assert fell.info["fallback"] == "f32"
    rel = lambda a: float(np.linalg.norm(a - f32) / np.linalg.norm(f32))  # noqa: E731
    assert rel(run(fell)) < 1e-5 < rel(run(bf16))


def _two_metrics(synth, seen=None):
    """error (lower is better) and score = 1 - error (higher is better) in one evaluation."""
    def evaluate(compiled):
        if seen is not None:
            seen.append(1)
        e = synth.error(compiled)
        return {"error": e, "score": 1.0 - e}
    return evaluate


def test_mixed_directions_in_one_criterion(synth, tmp_path):
    """A lower-is-better metric (error, 10% relative: allows every layer but conv2 in INT8) and
    a higher-is-better one (score = 1 - error, 0.0005 absolute: tighter). The tuned model must
    meet both as recomputed from its saved IR, and a candidate that meets the error but lowers
    the score by more than 0.0005 must have been rejected by the score."""
    from caloforge.quant import Metric, compile_model

    criterion = [Metric("error", 0.1), Metric("score", 0.0005, relative=False, direction="higher")]
    out = tmp_path / "mixed"
    result = _tune(synth, out, evaluate=_two_metrics(synth), criterion=criterion, report=True)
    assert result.passed
    base = result.baseline_metrics
    e = synth.error(compile_model(str(out / "model.xml")))
    assert e <= 1.1 * base["error"] and 1.0 - e >= base["score"] - 0.0005
    by_score = [t for t in result.trials
                if t.passed is False and t.metrics["error"] <= 1.1 * base["error"]]
    assert by_score and all(t.limiting == "score" for t in by_score)
    assert all(t.metrics["score"] < base["score"] - 0.0005 for t in by_score)
    # the history and the report hold every metric of every trial
    trials = [r for r in read_history(out / "history.jsonl") if r["kind"] == "trial"]
    assert trials and all(set(r["metrics"]) == {"error", "score"} for r in trials)
    text = (out / "report.md").read_text()
    assert "Every metric: final model vs FP32" in text and "| `score` |" in text
    assert "metric that limited the search: `score`" in text


def test_resume_under_a_multi_metric_criterion_repeats_no_trial(synth, tmp_path):
    from caloforge.quant import Metric

    criterion = [Metric("error", 0.1), Metric("score", 0.05, relative=False, direction="higher")]
    out = tmp_path / "resume-multi"
    first = _tune(synth, out, strategy="basic", evaluate=_two_metrics(synth), criterion=criterion,
                  max_trials=2)
    assert first.stop_reason.startswith("trial limit") and len(first.trials) == 2
    seen: list[int] = []
    result = _tune(synth, out, strategy="basic", evaluate=_two_metrics(synth, seen),
                   criterion=criterion, resume=True)
    _assert_hostile_isolated(result)
    trials = [r for r in read_history(out / "history.jsonl") if r["kind"] == "trial"]
    keys = [r["key"] for r in trials]
    assert len(keys) == len(set(keys))  # no configuration evaluated twice
    assert len(seen) == result.evaluations_run == len(keys) - 2  # baseline + 2 from history
    # the resumed run judged the old trials by both metrics, as an uninterrupted run does
    fresh = _tune(synth, tmp_path / "fresh", strategy="basic", evaluate=_two_metrics(synth),
                  criterion=criterion)
    assert [t.key for t in fresh.trials] == [t.key for t in result.trials]
    assert [t.passed for t in fresh.trials] == [t.passed for t in result.trials]


def test_resume_refuses_a_changed_criterion_or_model(synth, tmp_path):
    from caloforge.errors import UserError
    from caloforge.quant import Metric

    out = tmp_path / "changed"
    _tune(synth, out, strategy="basic", max_trials=1)
    before = (out / "history.jsonl").read_bytes()
    with pytest.raises(UserError, match="cannot resume, the criterion differs"):
        _tune(synth, out, strategy="basic", resume=True, criterion=Criterion(0.2))
    with pytest.raises(UserError, match="cannot resume, the criterion differs"):
        _tune(synth, out, strategy="basic", resume=True, evaluate=_two_metrics(synth),
              criterion=[Metric("error", 0.1), Metric("score", 0.05, relative=False,
                                                      direction="higher")])
    other = _onnx_export(__import__("torch").nn.Sequential(
        __import__("torch").nn.Conv3d(1, 2, 3, padding=1)), (2, 1, 8, 8, 8), tmp_path / "o.onnx")
    with pytest.raises(UserError, match="cannot resume, the model sha256 differs"):
        tune(other, synth.calibration, synth.error, CRITERION, "basic", out, resume=True,
             export_qdq=False, report=False, precisions=(INT8, FP32))
    assert (out / "history.jsonl").read_bytes() == before  # refused runs append nothing


def test_timeout_stops_the_search_and_keeps_the_best(synth, tmp_path):
    """timeout_s=0: the FP32 baseline is measured, then no new trial may start."""
    out = tmp_path / "timeout"
    calls: list[int] = []
    result = _tune(synth, out, strategy="basic", timeout_s=1e-9,
                   evaluate=lambda c: (calls.append(1), synth.error(c))[1])
    assert result.stop_reason.startswith("timeout") and not result.trials and len(calls) == 1
    assert not result.passed
    records = read_history(out / "history.jsonl")
    assert [r["kind"] for r in records] == ["meta", "baseline"]


def test_range_estimator_search_keeps_rare_large_activations(tmp_path):
    """Rare large inputs (like the shower cores of the highest energies): NNCF's default
    ``mean_minmax`` averages per-sample maxima and clips them; ``minmax`` keeps them. With both
    candidate sets the tuner must pick ``minmax`` and pass with every layer in INT8."""
    import openvino as ov
    import torch

    torch.manual_seed(1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv3d(1, 8, 3, padding=1)
            self.c2 = torch.nn.Conv3d(8, 1, 3, padding=1)

        def forward(self, x):
            return self.c2(torch.nn.functional.leaky_relu(self.c1(x), 0.2))

    path = _onnx_export(Net(), (1, 1, 8, 8, 8), tmp_path / "rare.onnx")
    rng = np.random.default_rng(3)
    scales = np.ones(10, np.float32)
    scales[0] = 40.0  # one calibration sample in ten is a "high-energy" one
    calibration = [{"x": (s * rng.random((1, 1, 8, 8, 8))).astype(np.float32)} for s in scales]
    x_eval = np.concatenate([c["x"] for c in calibration])
    fp32 = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref = np.asarray(fp32({"x": x_eval})[0], np.float64)

    def error(compiled):  # relative L2 error vs FP32, dominated by the large events
        y = np.asarray(compiled({"x": x_eval})[0], np.float64)
        return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))

    sets = [{"range": "mean_minmax"}, {"range": "minmax"}]
    result = tune(path, calibration, error, Criterion(0.1, relative=False), "ranked",
                  tmp_path / "out", params=sets, precisions=(INT8, FP32), export_qdq=False,
                  report=False, confirm_top=0, latency_time_s=0.0)
    trials = {t.config.params["range"]: t for t in result.trials if t.note.startswith("all int8")}
    assert set(trials) == {"mean_minmax", "minmax"}
    assert not trials["mean_minmax"].passed and trials["minmax"].passed
    assert trials["minmax"].metric < trials["mean_minmax"].metric
    assert result.passed and result.best.config.params["range"] == "minmax"
    assert set(result.best.config.precisions.values()) == {INT8}


def test_full_int8_and_the_tuners_all_int8_are_one_recipe(synth):
    """The runtime's full INT8 (ovgraph.quantize_layers) and the tuner's all-INT8 candidate
    (Builder) are the same calibration and the same kept quantizers: identical outputs. And only
    the layers are quantized: conv2's outlier input makes it far worse than FP32 (the hostile
    layer really is INT8), the output is not quantized (no 8-bit staircase in it)."""
    from caloforge.ovgraph import compile_model, find_layers, quantize_layers, read_model
    from caloforge.quant.build import Builder

    model = read_model(synth.model)
    names = [layer.name for layer in find_layers(model)]
    assert set(names) == {HOSTILE, *OTHERS}
    tuner = Builder(model, synth.calibration).build(Config.uniform(names, INT8))
    runtime = quantize_layers(model, synth.calibration, keep_weights=True)
    a = np.asarray(compile_model(tuner)({"x": synth.x_eval})[0])
    b = np.asarray(compile_model(runtime)({"x": synth.x_eval})[0])
    np.testing.assert_array_equal(a, b)
    fp32 = np.asarray(compile_model(model, hint="f32")({"x": synth.x_eval})[0])
    assert np.linalg.norm(a - fp32) / np.linalg.norm(fp32) > 0.3  # conv2 in INT8 hurts
    assert np.unique(a).size > 0.9 * a.size  # a float output, not 256 levels


def test_trained_energy_range_does_not_hide_a_corrupt_manifest(tmp_path):
    from caloforge.errors import UserError
    from caloforge.runtime.modelfile import manifest_path
    from caloforge.workflows import trained_energy_range

    model = tmp_path / "gen.onnx"
    model.write_bytes(b"not read here")
    assert trained_energy_range(None) == (2.0, 500.0)  # the shipped model card
    assert trained_energy_range(model) == (2.0, 500.0)  # no manifest: the shipped card's range
    manifest_path(model).write_text("{ not json")
    with pytest.raises(UserError, match="manifest"):
        trained_energy_range(model)


def test_a_parameter_set_that_cannot_be_calibrated_is_a_failed_trial(synth, tmp_path, monkeypatch):
    """NNCF refuses some range estimators on some graphs (a histogram of a constant tensor): the
    trial fails with the reason and the search goes on to the next parameter set."""
    import caloforge.quant.build as build

    real = build.calibrate
    refused: list[object] = []

    def calibrate(model, data, params, *args, **kwargs):
        if not refused:
            refused.append(params)
            raise ValueError("Too many bins for data range. Cannot create 2048 finite-sized bins.")
        return real(model, data, params, *args, **kwargs)

    monkeypatch.setattr(build, "calibrate", calibrate)
    result = _tune(synth, tmp_path / "refused")
    failed = [t for t in result.trials if "calibration failed" in t.note]
    assert refused and len(failed) >= 1 and failed[0].passed is False and failed[0].metric is None
    _assert_hostile_isolated(result)
