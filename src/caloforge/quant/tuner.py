"""The tuning loop: shared by every strategy, knows nothing about any of them.

The loop builds and compiles what a strategy asks for, evaluates it (metric, cheap output-error
probe, latency), checks the criterion, keeps the history file and the best-so-far model, honours
the time and trial limits, and on ``resume`` answers already-tried configurations from the history.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from caloforge.atomic import write_json
from caloforge.errors import UserError
from caloforge.quant.build import PRECISION_HINT_PATH, Builder, read_model
from caloforge.quant.config import BF16, FP32, Config
from caloforge.quant.history import HistoryWriter, read_history
from caloforge.quant.inspect import int8_flops_share, runtime_precisions
from caloforge.quant.latency import batched_inputs, fixed_batch_model, measure_latency
from caloforge.quant.objective import Criterion
from caloforge.quant.params import param_sets
from caloforge.quant.space import Layer, available_precisions, find_layers
from caloforge.quant.strategies import (
    DEFAULT_STRATEGY,
    PROBE,
    TRIAL,
    Outcome,
    Request,
    SearchSpace,
    Strategy,
    get_strategy,
)

log = logging.getLogger(__name__)

Evaluate = Callable[[Any], float]
"""``evaluate(compiled_model) -> metric``. ``compiled_model(inputs: dict) -> results`` (an
``openvino.CompiledModel``: ``compiled_model(inputs)[0]`` is the first output)."""

HISTORY_NAME = "history.jsonl"
MODEL_NAME = "model.xml"
BEST_NAME = "best.json"
FORMAT_VERSION = 1


@dataclass
class TrialRecord:
    """One evaluated configuration (a line of the history file)."""

    kind: str
    key: str
    config: Config
    metric: float | None = None
    passed: bool | None = None
    error: float | None = None
    latency_s: float | None = None
    wall_s: float = 0.0
    elapsed_s: float = 0.0
    note: str = ""
    runtime: dict[str, str] = field(default_factory=dict)  # layer -> runtime precision (trials)
    int8_share: float | None = None  # FLOPs share running INT8 (runtime graph)
    latency_samples: list[float] = field(default_factory=list)  # rotation re-timing (seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "key": self.key, "config": self.config.to_json(),
            "metric": self.metric, "passed": self.passed, "error": self.error,
            "latency_ms": None if self.latency_s is None else self.latency_s * 1e3,
            "wall_s": self.wall_s, "elapsed_s": self.elapsed_s, "note": self.note,
            "runtime": self.runtime, "int8_share": self.int8_share,
            "latency_samples_ms": [v * 1e3 for v in self.latency_samples],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TrialRecord:
        lat = obj.get("latency_ms")
        return cls(
            kind=obj["kind"], key=obj["key"], config=Config.from_json(obj["config"]),
            metric=_float(obj.get("metric")), passed=obj.get("passed"), error=_float(obj.get("error")),
            latency_s=None if lat is None else float(lat) / 1e3, wall_s=float(obj.get("wall_s", 0.0)),
            elapsed_s=float(obj.get("elapsed_s", 0.0)), note=obj.get("note", ""),
            runtime=dict(obj.get("runtime") or {}), int8_share=_float(obj.get("int8_share")),
            latency_samples=[float(v) / 1e3 for v in obj.get("latency_samples_ms") or []],
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class TuningResult:
    """What :func:`tune` found. ``passed`` is False when no candidate met the criterion; the
    saved model is then the best by metric."""

    passed: bool
    best: TrialRecord | None
    baseline_metric: float
    baseline_latency_s: float | None
    criterion: Criterion
    strategy: str
    layers: list[Layer]
    trials: list[TrialRecord]  # metric evaluations, in order (cached ones included)
    probes: list[TrialRecord]
    pareto_front: list[TrialRecord]
    output_dir: Path
    model_path: Path | None
    qdq_onnx_path: Path | None = None
    qdq_status: str = ""
    report_path: Path | None = None
    stop_reason: str = "search finished"
    wall_s: float = 0.0
    evaluations_run: int = 0  # metric evaluations run in this session (not from the history)
    probes_run: int = 0
    batch: int = 1

    @property
    def speedup(self) -> float | None:
        """FP32 latency / tuned latency (same batch, same process), if both were measured."""
        if self.best is None or not self.best.latency_s or not self.baseline_latency_s:
            return None
        return self.baseline_latency_s / self.best.latency_s

    def summary(self) -> str:
        """One line: passed or not, metric, speed-up, INT8 share."""
        if self.best is None:
            return f"no candidate evaluated ({self.stop_reason})"
        speed = f", {self.speedup:.2f}x FP32 throughput" if self.speedup else ""
        share = f", {self.best.int8_share:.0%} of FLOPs in INT8" if self.best.int8_share is not None else ""
        head = "criterion met" if self.passed else "NO configuration met the criterion; saved the best by metric"
        return (f"{head}: metric {self.best.metric:.6g} vs FP32 {self.baseline_metric:.6g} "
                f"({self.criterion.describe()}){speed}{share}; {self.best.config.summary()}")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_calibration(calibration: Sequence[Mapping[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for sample in calibration:
        for name in sorted(sample):
            arr = np.ascontiguousarray(sample[name])
            h.update(name.encode())
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def _rel_l2(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    num = sum(float(np.sum((np.asarray(a, np.float64) - b) ** 2)) for a, b in zip(outputs, reference, strict=True))
    den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in reference)
    return math.sqrt(num / den) if den > 0 else math.sqrt(num)


def save_model_atomic(model: ov.Model, path: Path) -> None:
    """Save IR ``path`` (.xml + .bin) via a temporary directory and two renames (.bin first)."""
    tmpdir = Path(tempfile.mkdtemp(prefix=".save-", dir=path.parent))
    try:
        tmp_xml = tmpdir / path.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp_xml, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class _Loop:
    """State of one tuning run (see :func:`tune`)."""

    def __init__(self, *, model: ov.Model, model_path: Path | None, builder: Builder,
                 layers: list[Layer], evaluate: Evaluate, criterion: Criterion,
                 output_dir: Path, probe_inputs: list[dict[str, np.ndarray]],
                 latency_inputs: dict[str, np.ndarray], latency_margin: float,
                 latency_time_s: float, bf16_parity: float, progress: Callable[[str], None]) -> None:
        self.model = model
        self.model_path = model_path
        self.builder = builder
        self.layers = layers
        self.evaluate = evaluate
        self.criterion = criterion
        self.output_dir = output_dir
        self.probe_inputs = probe_inputs
        self.latency_inputs = latency_inputs
        self.latency_margin = latency_margin
        self.latency_time_s = latency_time_s
        self.bf16_parity = bf16_parity
        self.progress = progress
        self.start = time.perf_counter()
        self.cache: dict[tuple[str, str], TrialRecord] = {}
        self.trials: list[TrialRecord] = []
        self.probes: list[TrialRecord] = []
        self.evaluations_run = 0
        self.probes_run = 0
        self.baseline_metric = math.nan
        self.baseline_latency: float | None = None
        self.reference_outputs: list[list[np.ndarray]] = []
        self.best: TrialRecord | None = None
        self.saved_key: str | None = None
        self.history: HistoryWriter | None = None

    # -- measurements ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def _outputs(self, compiled: ov.CompiledModel) -> list[list[np.ndarray]]:
        result = []
        for sample in self.probe_inputs:
            out = compiled(sample)
            result.append([np.asarray(out[i]) for i in range(len(compiled.outputs))])
        return result

    def _error(self, compiled: ov.CompiledModel) -> float:
        outs = self._outputs(compiled)
        flat = [o for per in outs for o in per]
        ref = [o for per in self.reference_outputs for o in per]
        return _rel_l2(flat, ref)

    def _bf16_parity(self, config: Config, rec: TrialRecord) -> bool:
        """BF16 parity: the output error may exceed that of the same configuration with its BF16
        layers in FP32 by at most ``bf16_parity`` (relative L2). A broken BF16 kernel (the AMX
        first-conv case, rel. L2 ~0.95) fails even where the metric happens to tolerate it."""
        ref_config = config.with_precision(config.layers_in(BF16), FP32)
        ref = self.cache.get((PROBE, ref_config.key()))
        if ref is None or ref.error is None:
            compiled = self.builder.compile(self.builder.build(ref_config))
            ref = TrialRecord(PROBE, ref_config.key(), ref_config, error=self._error(compiled),
                              elapsed_s=self.elapsed(), note="bf16 parity reference")
            self._append(ref)
            self._collect(ref, cached=False)
        ok = rec.error is not None and rec.error <= (ref.error or 0.0) + self.bf16_parity
        if not ok:
            rec.note = (rec.note + f" [BF16 parity failed: output error {rec.error:.3g} vs "
                        f"{ref.error:.3g} with FP32]").strip()
        return ok

    def _latency(self, model: ov.Model) -> float:
        fixed = fixed_batch_model(model, self.latency_inputs)
        compiled = self.builder.compile(fixed)
        return measure_latency(compiled, self.latency_inputs, min_time_s=self.latency_time_s)

    # -- baseline -------------------------------------------------------------------------------
    def run_baseline(self) -> None:
        fp32_model = self.model.clone()
        compiled = self.builder.compile_fp32()
        self.reference_outputs = self._outputs(compiled)
        cached = self.cache.get(("baseline", "fp32"))
        if cached is not None and cached.metric is not None:
            self.baseline_metric = cached.metric
            self.baseline_latency = cached.latency_s
            self.progress(f"FP32 baseline (from history): metric {cached.metric:.6g}")
            return
        t0 = time.perf_counter()
        metric = float(self.evaluate(compiled))
        latency = self._latency(fp32_model)
        names = [layer.name for layer in self.layers]
        rec = TrialRecord("baseline", "fp32", Config.uniform(names, FP32), metric=metric,
                          latency_s=latency, wall_s=time.perf_counter() - t0,
                          elapsed_s=self.elapsed(), note="FP32 reference")
        self._append(rec)
        self.baseline_metric, self.baseline_latency = metric, latency
        if not math.isfinite(metric):
            raise UserError(f"the metric of the FP32 model is {metric}: cannot set a criterion")
        self.progress(f"FP32 baseline: metric {metric:.6g}, {latency * 1e3:.3g} ms/batch; "
                      f"criterion {self.criterion.describe(metric)}")

    def _append(self, rec: TrialRecord) -> None:
        self.cache[(rec.kind, rec.key)] = rec
        if self.history is not None:
            self.history.append(rec.to_json())

    # -- one request ----------------------------------------------------------------------------
    def handle(self, request: Request) -> Outcome:
        kind = request.kind
        key = request.config.key()
        cached = self.cache.get((kind, key))
        if cached is not None and (not request.latency or cached.latency_s is not None
                                   or kind == PROBE):
            self._collect(cached, cached=True)
            return self._outcome(cached, cached=True)
        t0 = time.perf_counter()
        model = self.builder.build(request.config)
        compiled = self.builder.compile(model)
        rec = TrialRecord(kind, key, request.config, note=request.note)
        if kind == PROBE:
            rec.error = self._error(compiled)
            self.probes_run += 1
        else:
            if cached is not None:  # only the latency is missing
                rec = cached
            else:
                rec.metric = float(self.evaluate(compiled))
                rec.passed = self.criterion.passes(rec.metric, self.baseline_metric)
                rec.error = self._error(compiled)
                if rec.passed and request.config.layers_in(BF16):
                    rec.passed = self._bf16_parity(request.config, rec)
                rt = runtime_precisions(compiled, self.layers, model)
                rec.runtime = {name: info.runtime_precision for name, info in rt.items()}
                rec.int8_share = int8_flops_share(
                    self.layers, {name: info.precision for name, info in rt.items()})
                self.evaluations_run += 1
            if request.latency or rec.passed:
                rec.latency_s = self._latency(model)
        rec.wall_s = time.perf_counter() - t0
        rec.elapsed_s = self.elapsed()
        self._append(rec)
        self._collect(rec, cached=False)
        if kind == TRIAL:
            self._consider(rec, model)
            lat = f", {rec.latency_s * 1e3:.3g} ms" if rec.latency_s else ""
            self.progress(f"trial {len(self.trials):3d}: metric {rec.metric:.6g} "
                          f"{'PASS' if rec.passed else 'fail'}{lat}  [{request.config.summary()}]"
                          f"  {request.note}")
        return self._outcome(rec, cached=False)

    def _collect(self, rec: TrialRecord, cached: bool) -> None:
        target = self.probes if rec.kind == PROBE else self.trials
        if all(r.key != rec.key for r in target):
            target.append(rec)
        else:  # a re-measured record (latency added) replaces the old one
            target[:] = [rec if r.key == rec.key else r for r in target]
        if cached and rec.kind == TRIAL:
            self._consider(rec, None)

    def _outcome(self, rec: TrialRecord, cached: bool) -> Outcome:
        slack = None
        if rec.kind == TRIAL and rec.metric is not None:
            slack = self.criterion.slack(rec.metric, self.baseline_metric)
        return Outcome(rec.config, rec.kind, metric=rec.metric, passed=rec.passed, error=rec.error,
                       latency_s=rec.latency_s, cached=cached, slack=slack)

    # -- best so far ----------------------------------------------------------------------------
    def _faster(self, a: TrialRecord, b: TrialRecord) -> bool:
        """Is passing ``a`` preferable to passing ``b``? Latency, with a noise margin, then INT8 share.

        With rotation samples for both, ``a`` is faster only if every sample of ``a`` beats every
        sample of ``b`` (and the medians differ by more than the margin).
        """
        if a.latency_samples and b.latency_samples and a.latency_s and b.latency_s:
            if max(a.latency_samples) < min(b.latency_samples) and \
                    a.latency_s < b.latency_s * (1 - self.latency_margin):
                return True
            if max(b.latency_samples) < min(a.latency_samples) and \
                    b.latency_s < a.latency_s * (1 - self.latency_margin):
                return False
        elif a.latency_s and b.latency_s:
            if a.latency_s < b.latency_s * (1 - self.latency_margin):
                return True
            if b.latency_s < a.latency_s * (1 - self.latency_margin):
                return False
        sa, sb = a.int8_share or 0.0, b.int8_share or 0.0
        if not math.isclose(sa, sb, abs_tol=1e-9):
            return sa > sb
        if a.latency_s and b.latency_s and a.latency_s != b.latency_s:
            return a.latency_s < b.latency_s
        return self.criterion.better(a.metric or math.nan, b.metric or math.nan)

    def improves(self, rec: TrialRecord) -> bool:
        best = self.best
        if rec.metric is None:
            return False
        if best is None:
            return True
        if rec.passed and not best.passed:
            return True
        if best.passed and not rec.passed:
            return False
        if rec.passed:
            return self._faster(rec, best)
        return self.criterion.better(rec.metric, best.metric if best.metric is not None else math.nan)

    def _consider(self, rec: TrialRecord, model: ov.Model | None) -> None:
        if not self.improves(rec):
            return
        self.best = rec
        if model is not None:
            self.save_best(rec, model)

    def confirm_fastest(self, top: int = 4, rounds: int = 3) -> None:
        """Re-time the fastest passing candidates and FP32 in rotation, then re-pick the best.

        Timings taken minutes apart on a shared machine drift; measuring the finalists
        round-robin in one go (medians over the rounds) makes their comparison, and the
        speed-up against FP32, fair. The new latencies are appended to the history.
        """
        ok = [t for t in self.trials if t.passed and t.latency_s]
        if not ok:
            return
        passing = sorted(ok, key=lambda t: t.latency_s or 0.0)[:top]
        most_int8 = max(ok, key=lambda t: t.int8_share or 0.0)
        if most_int8 not in passing:
            passing.append(most_int8)
        compiled = []
        for rec in passing:
            fixed = fixed_batch_model(self.builder.build(rec.config), self.latency_inputs)
            compiled.append(self.builder.compile(fixed))
        fp32 = self.model.clone()
        fp32.set_rt_info("f32", PRECISION_HINT_PATH)
        compiled.append(self.builder.compile(fixed_batch_model(fp32, self.latency_inputs)))
        samples: list[list[float]] = [[] for _ in compiled]
        for _ in range(rounds):
            for i, c in enumerate(compiled):
                samples[i].append(measure_latency(c, self.latency_inputs, min_time_s=0.0,
                                                  min_runs=2, max_runs=2))
        medians = [float(np.median(v)) for v in samples]
        for rec, values in zip(passing, samples, strict=False):
            rec.latency_samples = list(values)
        self.baseline_latency = medians[-1]
        base = self.cache.get(("baseline", "fp32"))
        if base is not None:
            base.latency_s = medians[-1]
            self._append(base)
        for rec, latency in zip(passing, medians[:-1], strict=True):
            rec.latency_s = latency
            rec.note = (rec.note + " [re-timed]").strip()
            self._append(rec)
        best = None
        for rec in sorted(passing, key=lambda t: t.latency_s or 0.0):
            if best is None or self._faster(rec, best):
                best = rec
        if best is not None and best is not self.best:
            self.progress(f"re-timing in rotation changed the fastest: {best.config.summary()}")
            self.best = best

    def save_best(self, rec: TrialRecord, model: ov.Model) -> None:
        save_model_atomic(model, self.output_dir / MODEL_NAME)
        write_json(self.output_dir / BEST_NAME, rec.to_json())
        self.saved_key = rec.key


def _check_calibration(model: ov.Model, calibration: Sequence[Mapping[str, np.ndarray]]) -> None:
    names = {name for port in model.inputs for name in port.get_names()}
    for i, sample in enumerate(calibration):
        if not isinstance(sample, Mapping):
            raise UserError(f"calibration sample {i}: expected a dict input name -> array")
        unknown = set(sample) - names
        if unknown:
            raise UserError(f"calibration sample {i}: unknown input(s) {sorted(unknown)}; "
                            f"model inputs are {sorted(names)}")


def tune(model: str | os.PathLike[str] | ov.Model,
         calibration: Sequence[Mapping[str, np.ndarray]],
         evaluate: Evaluate,
         criterion: Criterion | None = None,
         strategy: str | type[Strategy] = DEFAULT_STRATEGY,
         output_dir: str | os.PathLike[str] = "tuned",
         *,
         resume: bool = False,
         timeout_s: float | None = None,
         max_trials: int | None = None,
         precisions: Sequence[str] | None = None,
         params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
         layers: Sequence[str] | None = None,
         latency_batch: int | None = None,
         latency_margin: float = 0.05,
         latency_time_s: float = 0.25,
         bf16_parity: float = 0.02,
         probe_samples: int = 4,
         device: str = "CPU",
         compile_config: Mapping[str, Any] | None = None,
         confirm_top: int = 4,
         export_qdq: bool = True,
         qdq_source: str | os.PathLike[str] | None = None,
         report: bool = True,
         model_sha256: str | None = None,
         progress: Callable[[str], None] | None = None) -> TuningResult:
    """Find the fastest mixed-precision version of ``model`` whose metric meets ``criterion``.

    Parameters
    ----------
    model: ONNX file, OpenVINO IR file or ``ov.Model`` (FP32).
    calibration: model inputs (dicts input name -> array), each one model call; used for NNCF
        range calibration, the cheap output-error probes (first ``probe_samples``) and latency.
    evaluate: ``evaluate(compiled) -> float``; ``compiled(inputs)`` runs the candidate.
    criterion: see :class:`~caloforge.quant.objective.Criterion` (default: relative 1%, lower is better).
    strategy: a registered name (``basic``, ``ranked``, ``pareto``) or a Strategy class.
    output_dir: created if missing; gets ``history.jsonl``, ``model.xml/.bin`` (best so far,
        replaced atomically after every improving trial), ``best.json``, ``result.json``,
        ``model_qdq.onnx`` (if feasible), ``report.md`` and ``report.png``.
    resume: continue the history in ``output_dir``; configurations already evaluated are not
        re-run. Without it an existing history is an error (nothing is overwritten).
    timeout_s, max_trials: stop the search after this wall time / number of metric evaluations
        (history included); the best so far is kept and reported.
    precisions: allowed layer precisions (default: int8 + fp32, and bf16 where the CPU has it).
    params: quantization parameters (:mod:`caloforge.quant.params`): one set (a mapping), or
        the candidate sets to try (a sequence; the strategy keeps the one whose all-INT8 model
        scores best). Default: :data:`~caloforge.quant.params.DEFAULT_PARAM_SETS`.
    layers: restrict tuning to these layer names (the others stay FP32).
    latency_batch: batch used for timing (default: the calibration samples' batch).
    latency_margin: latencies closer than this fraction count as equal (noise); then the higher
        INT8 FLOPs share wins.
    bf16_parity: a configuration with BF16 layers passes only if its relative L2 output error
        (vs FP32, on the probe inputs) exceeds that of the same configuration with those layers
        in FP32 by at most this much (besides meeting the criterion).
    latency_time_s: minimum timing per latency measurement (>= 5 runs in any case).
    confirm_top: at the end, re-time this many of the fastest passing candidates and FP32 in
        rotation (same process, interleaved, medians) and re-pick the fastest (0: skip).
    qdq_source: the ONNX file ``model`` was made from, for the QDQ ONNX export when ``model`` is
        an in-memory (e.g. rewritten) ``ov.Model``; layers are mapped back to its nodes by name.
    model_sha256: identity of an in-memory ``model`` recorded in the history (e.g. the source
        file's checksum plus the rewrite applied), so ``resume`` can detect a changed model.
    """
    say = progress or (lambda msg: log.info("%s", msg))
    criterion = criterion or Criterion()
    strategy_cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    out = Path(output_dir)
    if not out.parent.exists():
        raise UserError(f"{out}: parent directory {out.parent} does not exist")
    if not out.parent.is_dir():
        raise UserError(f"{out}: {out.parent} is not a directory")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    core = ov.Core()
    model_path: Path | None = None
    if isinstance(model, ov.Model):
        ov_model = model
        model_sha = model_sha256 or "in-memory"
    else:
        model_path = Path(model)
        if not model_path.is_file():
            raise UserError(f"{model_path}: no such model file")
        ov_model = read_model(str(model_path), core)
        model_sha = _sha256_file(model_path)
    calibration = list(calibration)
    if not calibration:
        raise UserError("calibration set is empty")
    _check_calibration(ov_model, calibration)

    all_layers = find_layers(ov_model)
    if not all_layers:
        raise UserError(f"{model_path or 'model'}: no quantizable layer (Conv/MatMul/Gemm) found")
    if layers is not None:
        unknown = set(layers) - {layer.name for layer in all_layers}
        if unknown:
            raise UserError(f"unknown layer(s) {sorted(unknown)}")
        all_layers = [layer for layer in all_layers if layer.name in set(layers)]
    allowed = tuple(precisions) if precisions else available_precisions(core, device)
    qparams = param_sets(params)
    space = SearchSpace(all_layers, allowed, qparams)

    try:  # created only now: a bad model or calibration set leaves no empty folder behind
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create output directory ({exc.strerror or exc})") from None
    history_path = out / HISTORY_NAME
    meta = {"kind": "meta", "version": FORMAT_VERSION, "model_sha256": model_sha,
            "calibration_sha256": _sha256_calibration(calibration),
            "criterion": criterion.to_json(), "params": qparams,
            "layers": [layer.name for layer in all_layers]}
    old = read_history(history_path)
    if old and not resume:
        raise UserError(f"{history_path}: a tuning history exists; pass --resume (resume=True) to "
                        "continue it, or choose another output directory")
    for rec in old:
        if rec.get("kind") == "meta":
            for field_name in ("model_sha256", "calibration_sha256", "criterion", "params", "layers"):
                if rec.get(field_name) != meta[field_name]:
                    raise UserError(f"{history_path}: cannot resume, the {field_name.replace('_', ' ')} "
                                    "differs from the interrupted run")

    batch = latency_batch or int(np.asarray(next(iter(calibration[0].values()))).shape[0] or 1)
    builder = Builder(ov_model, calibration, core, device, compile_config)
    loop = _Loop(model=ov_model, model_path=model_path, builder=builder, layers=all_layers,
                 evaluate=evaluate, criterion=criterion, output_dir=out,
                 probe_inputs=[dict(s) for s in calibration[:max(1, probe_samples)]],
                 latency_inputs=batched_inputs(calibration[0], batch),
                 latency_margin=latency_margin, latency_time_s=latency_time_s, bf16_parity=bf16_parity,
                 progress=say)
    for raw in old:
        if raw.get("kind") in (TRIAL, PROBE, "baseline") and "key" in raw:
            try:
                rec = TrialRecord.from_json(raw)
            except (KeyError, TypeError, ValueError):
                continue
            loop.cache[(rec.kind, rec.key)] = rec
    if old:
        say(f"resuming: {sum(1 for k in loop.cache if k[0] == TRIAL)} trials and "
            f"{sum(1 for k in loop.cache if k[0] == PROBE)} probes in {history_path}")
    best_file = out / BEST_NAME
    if resume and best_file.exists() and (out / MODEL_NAME).exists():
        try:
            import json

            loop.saved_key = json.loads(best_file.read_text())["key"]
        except (OSError, ValueError, KeyError):
            loop.saved_key = None

    stop_reason = "search finished"
    with HistoryWriter(history_path) as history:
        loop.history = history
        if not old:
            history.append(meta)
        loop.run_baseline()
        gen = strategy_cls(space).search()
        try:
            request = next(gen)
            while True:
                if request.kind == TRIAL and (request.config.key() not in
                                              {k for kind, k in loop.cache if kind == TRIAL}):
                    if max_trials is not None and len(loop.trials) >= max_trials:
                        stop_reason = f"trial limit ({max_trials}) reached"
                        break
                    if timeout_s is not None and loop.elapsed() >= timeout_s:
                        stop_reason = f"timeout ({timeout_s:g} s) reached"
                        break
                elif timeout_s is not None and loop.elapsed() >= timeout_s and request.kind == PROBE:
                    stop_reason = f"timeout ({timeout_s:g} s) reached"
                    break
                outcome = loop.handle(request)
                request = gen.send(outcome)
        except StopIteration:
            pass
        finally:
            gen.close()

        passed = bool(loop.best and loop.best.passed)
        if passed and confirm_top > 0:
            loop.confirm_fastest(top=confirm_top)
        if loop.best is not None and loop.saved_key != loop.best.key:
            loop.save_best(loop.best, builder.build(loop.best.config))
        if passed and loop.best is not None and loop.best.latency_s is None:
            loop.best.latency_s = loop._latency(builder.build(loop.best.config))

    result = TuningResult(
        passed=passed, best=loop.best, baseline_metric=loop.baseline_metric,
        baseline_latency_s=loop.baseline_latency, criterion=criterion, strategy=strategy_cls.name,
        layers=all_layers, trials=loop.trials, probes=loop.probes,
        pareto_front=pareto_front(loop.trials, criterion), output_dir=out,
        model_path=(out / MODEL_NAME) if loop.best is not None else None,
        stop_reason=stop_reason, wall_s=loop.elapsed(), evaluations_run=loop.evaluations_run,
        probes_run=loop.probes_run, batch=batch)
    if export_qdq and loop.best is not None:
        from caloforge.quant.qdq import export_qdq_onnx

        source = Path(qdq_source) if qdq_source is not None else model_path
        result.qdq_onnx_path, result.qdq_status = export_qdq_onnx(
            source, loop.best.config, calibration, out / "model_qdq.onnx")
    if report:
        from caloforge.quant.report import write_report

        result.report_path = write_report(result)
    write_json(out / "result.json", result_to_json(result))
    say(result.summary())
    return result


def pareto_front(trials: Sequence[TrialRecord], criterion: Criterion) -> list[TrialRecord]:
    """Trials not dominated in (metric, latency): no other is at least as good in both and
    better in one. Only trials with a latency count. Sorted by latency."""
    timed = [t for t in trials if t.latency_s is not None and t.metric is not None
             and math.isfinite(t.metric)]
    front = []
    for t in timed:
        dominated = False
        for o in timed:
            if o is t:
                continue
            metric_ok = not criterion.better(t.metric, o.metric)  # o at least as good
            if metric_ok and o.latency_s <= t.latency_s and (
                    criterion.better(o.metric, t.metric) or o.latency_s < t.latency_s):
                dominated = True
                break
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: t.latency_s or 0.0)


def result_to_json(result: TuningResult) -> dict[str, Any]:
    return {
        "passed": result.passed, "summary": result.summary(), "strategy": result.strategy,
        "criterion": result.criterion.to_json(), "baseline_metric": result.baseline_metric,
        "baseline_latency_ms": None if result.baseline_latency_s is None else result.baseline_latency_s * 1e3,
        "best": None if result.best is None else result.best.to_json(),
        "speedup": result.speedup, "stop_reason": result.stop_reason, "wall_s": result.wall_s,
        "evaluations_run": result.evaluations_run, "probes_run": result.probes_run,
        "trials": len(result.trials), "probes": len(result.probes), "batch": result.batch,
        "model": None if result.model_path is None else result.model_path.name,
        "qdq_onnx": None if result.qdq_onnx_path is None else result.qdq_onnx_path.name,
        "qdq_status": result.qdq_status,
        "pareto_front": [t.key for t in result.pareto_front],
        "layers": [{"name": layer.name, "type": layer.op_type, "flops": layer.flops}
                   for layer in result.layers],
    }
