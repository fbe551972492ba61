"""One tuning run's state, shared by every strategy and knowing nothing about any of them.

The session builds and compiles what a strategy asks for, evaluates it (metric, cheap
output-error probe, latency), checks the criterion, keeps the history file and the best-so-far
model, and on ``resume`` answers already-tried configurations from the history.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov

from caloforge.atomic import write_json
from caloforge.errors import UserError
from caloforge.ovgraph import rel_l2
from caloforge.quant.build import Builder
from caloforge.quant.config import BF16, FP32, Config
from caloforge.quant.history import HistoryWriter
from caloforge.quant.inspect import int8_flops_share, layer_precisions
from caloforge.quant.latency import fixed_batch_model, measure_latency
from caloforge.quant.objective import Objective
from caloforge.quant.options import TuneOptions
from caloforge.quant.records import BASELINE, TrialRecord
from caloforge.quant.space import Layer
from caloforge.quant.strategies import PROBE, TRIAL, Outcome, Request, SearchSpace, Strategy

MODEL_NAME = "model.xml"
BEST_NAME = "best.json"


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


class Session:
    """State of one tuning run (see :func:`caloforge.quant.tune`): builds, compiles and measures
    what a strategy asks for, keeps the cache, the history and the best-so-far model."""

    def __init__(self, *, builder: Builder, layers: list[Layer], objective: Objective,
                 output_dir: Path, probe_inputs: list[dict[str, np.ndarray]],
                 latency_inputs: dict[str, np.ndarray], options: TuneOptions,
                 progress: Callable[[str], None]) -> None:
        self.model = builder.model
        self.builder = builder
        self.layers = layers
        self.objective = objective
        self.output_dir = output_dir
        self.probe_inputs = probe_inputs
        self.latency_inputs = latency_inputs
        self.latency_margin = options.latency_margin
        self.latency_time_s = options.latency_time_s
        self.bf16_parity = options.bf16_parity
        self.progress = progress
        self.start = time.perf_counter()
        self.cache: dict[tuple[str, str], TrialRecord] = {}
        self.trials: list[TrialRecord] = []
        self.probes: list[TrialRecord] = []
        self.evaluations_run = 0
        self.probes_run = 0
        self.baseline_metric = math.nan  # the first metric's FP32 value
        self.baseline_metrics: dict[str, float] = {}
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

    def _error(self, compiled: ov.CompiledModel,
               reference: list[list[np.ndarray]] | None = None) -> float:
        """Relative L2 output error on the probe inputs vs FP32 (or vs ``reference`` outputs)."""
        outs = self._outputs(compiled)
        flat = [o for per in outs for o in per]
        ref = [o for per in (reference or self.reference_outputs) for o in per]
        return rel_l2(flat, ref)

    def _bf16_parity(self, config: Config, rec: TrialRecord, compiled: ov.CompiledModel) -> bool:
        """BF16 parity (:data:`caloforge.ovgraph.BF16_PARITY_MAX_REL_L2`, the runtime's rule
        too): the relative L2 distance of the candidate's outputs to those of the same
        configuration with its BF16 layers in FP32 must be at most ``bf16_parity``. A broken
        BF16 kernel (the AMX first-conv case, rel. L2 ~0.95) fails even where the metric happens
        to tolerate it."""
        ref_config = config.with_precision(config.layers_in(BF16), FP32)
        ref_compiled = self.builder.compile(self.builder.build(ref_config))
        if (PROBE, ref_config.key()) not in self.cache:
            ref = TrialRecord(PROBE, ref_config.key(), ref_config,
                              error=self._error(ref_compiled), elapsed_s=self.elapsed(),
                              note="bf16 parity reference")
            self._append(ref)
            self._collect(ref, cached=False)
        distance = self._error(compiled, self._outputs(ref_compiled))
        ok = distance <= self.bf16_parity
        if not ok:
            rec.note = (rec.note + f" [BF16 parity failed: rel. L2 {distance:.3g} to the same "
                        f"configuration in FP32 > {self.bf16_parity:g}]").strip()
            rec.limiting = "bf16_parity"
            parity_slack = (self.bf16_parity - distance) / self.bf16_parity \
                if self.bf16_parity > 0 else -math.inf
            rec.slack = min(rec.slack if rec.slack is not None else math.inf, parity_slack)
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
        cached = self.cache.get((BASELINE, "fp32"))
        if cached is not None and cached.metric is not None:
            self.baseline_metrics = self._values(cached)
            self.baseline_metric = cached.metric
            self.baseline_latency = cached.latency_s
            self.progress(f"FP32 baseline (from history): {self._show(self.baseline_metrics)}")
            return
        t0 = time.perf_counter()
        values = self.objective.measure(compiled)
        latency = self._latency(fp32_model)
        names = [layer.name for layer in self.layers]
        first = next(iter(values.values()))
        rec = TrialRecord(BASELINE, "fp32", Config.uniform(names, FP32), metric=first,
                          latency_s=latency, wall_s=time.perf_counter() - t0,
                          elapsed_s=self.elapsed(), note="FP32 reference", metrics=dict(values))
        self._append(rec)
        self.baseline_metrics, self.baseline_metric, self.baseline_latency = values, first, latency
        bad = [name for name, v in values.items() if not math.isfinite(v)]
        if bad:
            raise UserError(f"the metric {bad[0]} of the FP32 model is {values[bad[0]]}: cannot "
                            "set a criterion")
        self.progress(f"FP32 baseline: {self._show(values)}, {latency * 1e3:.3g} ms/batch; "
                      f"criterion {self.objective.describe(values)}")

    def _values(self, rec: TrialRecord) -> dict[str, float]:
        """Every metric of a record (a one-metric history written before multi-metric criteria
        holds only ``metric``)."""
        if rec.metrics:
            return dict(rec.metrics)
        names = self.objective.names
        return {names[0]: rec.metric if rec.metric is not None else math.nan} if len(names) == 1 \
            else {}

    @staticmethod
    def _show(values: dict[str, float]) -> str:
        if len(values) == 1:
            return f"metric {next(iter(values.values())):.6g}"
        return ", ".join(f"{k} {v:.4g}" for k, v in list(values.items())[:3]) + \
            (f" (+{len(values) - 3} more)" if len(values) > 3 else "")

    def _append(self, rec: TrialRecord) -> None:
        self.cache[(rec.kind, rec.key)] = rec
        if self.history is not None:
            self.history.append(rec.to_json())

    # -- one request ----------------------------------------------------------------------------
    def _evaluate(self, rec: TrialRecord, model: ov.Model, compiled: ov.CompiledModel) -> None:
        """The metric, the criterion, the output error, BF16 parity and runtime precisions."""
        rec.metrics = self.objective.measure(compiled)
        rec.metric = next(iter(rec.metrics.values()))
        self._judge(rec)
        rec.error = self._error(compiled)
        if rec.passed and rec.config.layers_in(BF16):
            rec.passed = self._bf16_parity(rec.config, rec, compiled)
        rt = layer_precisions(compiled, self.layers, model)
        rec.runtime = {name: info.runtime_precision for name, info in rt.items()}
        rec.int8_share = int8_flops_share(
            self.layers, {name: info.precision for name, info in rt.items()})
        self.evaluations_run += 1

    def _judge(self, rec: TrialRecord) -> None:
        """Pass/fail, slack and limiting metric of a trial from its metric values."""
        values = self._values(rec)
        rec.passed = self.objective.passes(values, self.baseline_metrics)
        rec.slack = self.objective.slack(values, self.baseline_metrics)
        rec.limiting = self.objective.limiting(values, self.baseline_metrics)

    def handle(self, request: Request) -> Outcome:
        kind = request.kind
        key = request.config.key()
        cached = self.cache.get((kind, key))
        if cached is not None and (not request.latency or cached.latency_s is not None
                                   or kind == PROBE):
            self._collect(cached, cached=True)
            return self._outcome(cached, cached=True)
        t0 = time.perf_counter()
        try:
            model = self.builder.build(request.config)
        except (ValueError, RuntimeError) as exc:  # NNCF cannot calibrate this set on this graph
            return self._failed_build(request, exc, t0)
        compiled = self.builder.compile(model)
        rec = TrialRecord(kind, key, request.config, note=request.note)
        if kind == PROBE:
            rec.error = self._error(compiled)
            self.probes_run += 1
        else:
            if cached is not None:  # only the latency is missing
                rec = cached
            else:
                self._evaluate(rec, model, compiled)
            if request.latency or rec.passed:
                rec.latency_s = self._latency(model)
        rec.wall_s = time.perf_counter() - t0
        rec.elapsed_s = self.elapsed()
        self._append(rec)
        self._collect(rec, cached=False)
        if kind == TRIAL:
            self._consider(rec, model)
            lat = f", {rec.latency_s * 1e3:.3g} ms" if rec.latency_s else ""
            what = f"metric {rec.metric:.6g}" if len(rec.metrics) <= 1 else \
                f"slack {rec.slack:.3g} ({rec.limiting})"
            self.progress(f"trial {len(self.trials):3d}: {what} "
                          f"{'PASS' if rec.passed else 'fail'}{lat}  [{request.config.summary()}]"
                          f"  {request.note}")
        return self._outcome(rec, cached=False)

    def _failed_build(self, request: Request, exc: Exception, t0: float) -> Outcome:
        """A configuration whose calibration fails (e.g. NNCF's histogram range estimator on a
        constant tensor) is a failed trial with the reason in its note; the search goes on."""
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        rec = TrialRecord(request.kind, request.config.key(), request.config, passed=False,
                          note=f"{request.note}; calibration failed: {reason}".lstrip("; "),
                          limiting="calibration failed")
        rec.wall_s = time.perf_counter() - t0
        rec.elapsed_s = self.elapsed()
        self._append(rec)
        self._collect(rec, cached=False)
        if request.kind == TRIAL:
            self.progress(f"trial {len(self.trials):3d}: calibration failed ({reason})  "
                          f"[{request.config.summary()}]  {request.note}")
        return self._outcome(rec, cached=False)

    def _collect(self, rec: TrialRecord, cached: bool) -> None:
        target = self.probes if rec.kind == PROBE else self.trials
        if all(r.key != rec.key for r in target):
            target.append(rec)
        else:  # a re-measured record (latency added) replaces the old one
            target[:] = [rec if r.key == rec.key else r for r in target]
        if cached and rec.kind == TRIAL:
            if rec.metric is not None and rec.slack is None:  # an older history: no slack stored
                bf16_failed = "BF16 parity failed" in rec.note
                self._judge(rec)
                rec.passed = bool(rec.passed) and not bf16_failed
            self._consider(rec, None)

    def _outcome(self, rec: TrialRecord, cached: bool) -> Outcome:
        return Outcome(rec.config, rec.kind, metric=rec.metric, passed=rec.passed, error=rec.error,
                       latency_s=rec.latency_s, cached=cached,
                       slack=rec.slack if rec.kind == TRIAL else None, metrics=dict(rec.metrics),
                       limiting=rec.limiting)

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
        return _slack(a) > _slack(b)

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
        return _slack(rec) > _slack(best)

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
        fp32 = self.builder.fp32_model()
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
        base = self.cache.get((BASELINE, "fp32"))
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

    # -- the search ---------------------------------------------------------------------------
    def search(self, strategy: type[Strategy], space: SearchSpace, max_trials: int | None,
               timeout_s: float | None) -> str:
        """Drive ``strategy``'s generator: answer each request until it finishes or a limit
        (``max_trials`` new metric evaluations, ``timeout_s`` wall time) is reached; returns
        the stop reason."""
        gen = strategy(space).search()
        tried = {k for kind, k in self.cache if kind == TRIAL}
        try:
            request = next(gen)
            while True:
                new_trial = request.kind == TRIAL and request.config.key() not in tried
                if new_trial and max_trials is not None and len(self.trials) >= max_trials:
                    return f"trial limit ({max_trials}) reached"
                if (new_trial or request.kind == PROBE) and timeout_s is not None \
                        and self.elapsed() >= timeout_s:
                    return f"timeout ({timeout_s:g} s) reached"
                outcome = self.handle(request)
                if request.kind == TRIAL:
                    tried.add(request.config.key())
                request = gen.send(outcome)
        except StopIteration:
            return "search finished"
        finally:
            gen.close()

    def finish(self, confirm_top: int) -> bool:
        """After the search: re-time the finalists, save the best model, time it if needed.
        Returns whether the best meets the criterion."""
        passed = bool(self.best and self.best.passed)
        if passed and confirm_top > 0:
            self.confirm_fastest(top=confirm_top)
        if self.best is not None and self.saved_key != self.best.key:
            self.save_best(self.best, self.builder.build(self.best.config))
        if passed and self.best is not None and self.best.latency_s is None:
            self.best.latency_s = self._latency(self.builder.build(self.best.config))
        return passed

    def save_best(self, rec: TrialRecord, model: ov.Model) -> None:
        save_model_atomic(model, self.output_dir / MODEL_NAME)
        write_json(self.output_dir / BEST_NAME, rec.to_json())
        self.saved_key = rec.key


def _slack(rec: TrialRecord) -> float:
    return rec.slack if rec.slack is not None and not math.isnan(rec.slack) else -math.inf
