""":func:`tune`: open the model, check the inputs and the history, run a strategy in a
:class:`~caloforge.quant.session.Session`, then save, export and report.

The pieces: :mod:`~caloforge.quant.options` (the knobs), :mod:`~caloforge.quant.objective` (the
metric and the criterion), :mod:`~caloforge.quant.session` (building, measuring, caching, the
best model), :mod:`~caloforge.quant.strategies` (what to try next), :mod:`~caloforge.quant.records`
(what was measured).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from caloforge.atomic import write_json
from caloforge.data.manifest import sha256_file
from caloforge.errors import UserError
from caloforge.ovgraph import read_model
from caloforge.quant.build import Builder
from caloforge.quant.history import HistoryWriter, read_history
from caloforge.quant.latency import batched_inputs
from caloforge.quant.objective import Criterion, CriterionLike, Evaluate, Objective, metrics_of
from caloforge.quant.options import TuneOptions
from caloforge.quant.params import param_sets
from caloforge.quant.records import (
    BASELINE,
    TrialRecord,
    TuningResult,
    limited_by,
    pareto_front,
    result_to_json,
)
from caloforge.quant.session import BEST_NAME, MODEL_NAME, Session
from caloforge.quant.space import Layer, available_precisions, find_layers
from caloforge.quant.strategies import (
    DEFAULT_STRATEGY,
    PROBE,
    TRIAL,
    SearchSpace,
    Strategy,
    get_strategy,
)

__all__ = ["BEST_NAME", "HISTORY_NAME", "MODEL_NAME", "Evaluate", "TrialRecord", "TuneOptions",
           "TuningResult", "pareto_front", "result_to_json", "tune"]

log = logging.getLogger(__name__)

HISTORY_NAME = "history.jsonl"
FORMAT_VERSION = 1


def _sha256_calibration(calibration: Sequence[Mapping[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for sample in calibration:
        for name in sorted(sample):
            arr = np.ascontiguousarray(sample[name])
            h.update(name.encode())
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def _check_calibration(model: ov.Model, calibration: Sequence[Mapping[str, np.ndarray]]) -> None:
    if not calibration:
        raise UserError("calibration: the calibration set is empty")
    names = {name for port in model.inputs for name in port.get_names()}
    for i, sample in enumerate(calibration):
        if not isinstance(sample, Mapping):
            raise UserError(f"calibration sample {i}: expected a dict input name -> array")
        unknown = set(sample) - names
        if unknown:
            raise UserError(f"calibration sample {i}: unknown input(s) {sorted(unknown)}; "
                            f"model inputs are {sorted(names)}")


def _check_output_dir(out: Path) -> None:
    if not out.parent.exists():
        raise UserError(f"{out}: parent directory {out.parent} does not exist")
    if not out.parent.is_dir():
        raise UserError(f"{out}: {out.parent} is not a directory")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")


def _open_model(model: str | os.PathLike[str] | ov.Model, identity: str | None
                ) -> tuple[ov.Model, Path | None, str]:
    """(model, its path or None, its identity for the history)."""
    if isinstance(model, ov.Model):
        return model, None, identity or "in-memory"
    path = Path(model)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    return read_model(path), path, sha256_file(path)


def _select_layers(model: ov.Model, where: str, names: Sequence[str] | None) -> list[Layer]:
    layers = find_layers(model)
    if not layers:
        raise UserError(f"{where}: no quantizable layer (Conv/MatMul/Gemm) found")
    if names is None:
        return layers
    unknown = set(names) - {layer.name for layer in layers}
    if unknown:
        raise UserError(f"layers: unknown layer(s) {sorted(unknown)}")
    return [layer for layer in layers if layer.name in set(names)]


def _open_history(out: Path, meta: dict[str, Any], resume: bool) -> list[dict[str, Any]]:
    """The records of an earlier run in ``out`` (checked against ``meta``)."""
    history_path = out / HISTORY_NAME
    old = read_history(history_path)
    if old and not resume:
        raise UserError(f"{history_path}: a tuning history exists; pass resume=True to "
                        "continue it, or choose another output directory")
    for rec in old:
        if rec.get("kind") == "meta":
            for name in ("model_sha256", "calibration_sha256", "criterion", "params", "layers"):
                if rec.get(name) != meta[name]:
                    raise UserError(f"{history_path}: cannot resume, the {name.replace('_', ' ')} "
                                    "differs from the interrupted run")
    return old


def _load_cache(session: Session, old: list[dict[str, Any]], out: Path, resume: bool,
                say: Callable[[str], None]) -> None:
    for raw in old:
        if raw.get("kind") in (TRIAL, PROBE, BASELINE) and "key" in raw:
            try:
                rec = TrialRecord.from_json(raw)
            except (KeyError, TypeError, ValueError):
                continue
            session.cache[(rec.kind, rec.key)] = rec
    if old:
        say(f"resuming: {sum(1 for k in session.cache if k[0] == TRIAL)} trials and "
            f"{sum(1 for k in session.cache if k[0] == PROBE)} probes in {out / HISTORY_NAME}")
    best_file = out / BEST_NAME
    if resume and best_file.exists() and (out / MODEL_NAME).exists():
        try:
            session.saved_key = json.loads(best_file.read_text())["key"]
        except (OSError, ValueError, KeyError):
            session.saved_key = None


def tune(model: str | os.PathLike[str] | ov.Model,
         calibration: Sequence[Mapping[str, np.ndarray]],
         evaluate: Evaluate,
         criterion: CriterionLike | None = None,
         strategy: str | type[Strategy] = DEFAULT_STRATEGY,
         output_dir: str | os.PathLike[str] = "tuned",
         options: TuneOptions | None = None,
         **option_values: Any) -> TuningResult:
    """Find the fastest mixed-precision version of ``model`` whose metric meets ``criterion``.

    model: ONNX file, OpenVINO IR file or ``ov.Model`` (FP32).
    calibration: model inputs (dicts input name -> array), each one model call; used for NNCF
        range calibration, the cheap output-error probes and latency.
    evaluate: ``evaluate(compiled) -> float`` (one metric) or ``-> {name: value}`` (every
        metric of a multi-metric criterion); ``compiled(inputs)`` runs the candidate.
    criterion: a :class:`~caloforge.quant.objective.Criterion` (one metric; default: relative
        1%, lower is better) or a list of :class:`~caloforge.quant.objective.Metric` (every one
        must pass; the search ranks on the smallest normalised slack).
    strategy: a registered name (``basic``, ``ranked``, ``pareto``) or a Strategy class.
    output_dir: created if missing; gets ``history.jsonl``, ``model.xml/.bin`` (best so far,
        replaced atomically after every improving trial), ``best.json``, ``result.json``,
        ``model_qdq.onnx`` (if feasible), ``report.md`` and ``report.png``.
    options: a :class:`~caloforge.quant.options.TuneOptions`; ``option_values`` are its fields
        given by name (``resume=True``, ``max_trials=5``, ...) and override it.
    """
    unknown = set(option_values) - TuneOptions.names()
    if unknown:
        raise TypeError(f"tune() got unexpected option(s) {sorted(unknown)}")
    opts = dataclasses.replace(options or TuneOptions(), **option_values)
    say = opts.progress or (lambda msg: log.info("%s", msg))
    try:
        metrics = metrics_of(criterion)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    objective = Objective(evaluate, criterion if isinstance(criterion, Criterion)
                          else Criterion() if criterion is None else metrics)
    strategy_cls = get_strategy(strategy) if isinstance(strategy, str) else strategy
    out = Path(output_dir)
    _check_output_dir(out)
    ov_model, model_path, model_sha = _open_model(model, opts.model_sha256)
    calibration = list(calibration)
    _check_calibration(ov_model, calibration)
    layers = _select_layers(ov_model, str(model_path or "model"), opts.layers)
    allowed = tuple(opts.precisions) if opts.precisions else available_precisions(opts.device)
    qparams = param_sets(opts.params)
    try:  # created only now: a bad model or calibration set leaves no empty folder behind
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create output directory ({exc.strerror or exc})") from None
    meta = {"kind": "meta", "version": FORMAT_VERSION, "model_sha256": model_sha,
            "calibration_sha256": _sha256_calibration(calibration),
            "criterion": objective.to_json(), "params": qparams,
            "layers": [layer.name for layer in layers]}
    old = _open_history(out, meta, opts.resume)
    batch = opts.latency_batch or int(np.asarray(next(iter(calibration[0].values()))).shape[0] or 1)
    session = Session(builder=Builder(ov_model, calibration, opts.device, opts.compile_config),
                      layers=layers, objective=objective, output_dir=out,
                      probe_inputs=[dict(s) for s in calibration[:max(1, opts.probe_samples)]],
                      latency_inputs=batched_inputs(calibration[0], batch), options=opts,
                      progress=say)
    _load_cache(session, old, out, opts.resume, say)
    with HistoryWriter(out / HISTORY_NAME) as history:
        session.history = history
        if not old:
            history.append(meta)
        session.run_baseline()
        stop_reason = session.search(strategy_cls, SearchSpace(layers, allowed, qparams),
                                     opts.max_trials, opts.timeout_s)
        passed = session.finish(opts.confirm_top)
    result = TuningResult(
        passed=passed, best=session.best, baseline_metric=session.baseline_metric,
        baseline_latency_s=session.baseline_latency, criterion=objective.criterion,
        strategy=strategy_cls.name, layers=layers, trials=session.trials, probes=session.probes,
        pareto_front=pareto_front(session.trials, objective.criterion), output_dir=out,
        model_path=(out / MODEL_NAME) if session.best is not None else None,
        stop_reason=stop_reason, wall_s=session.elapsed(), evaluations_run=session.evaluations_run,
        probes_run=session.probes_run, batch=batch, baseline_metrics=dict(session.baseline_metrics),
        limited_by=limited_by(session.trials, session.best))
    _write_outputs(result, opts, model_path, calibration)
    say(result.summary())
    return result


def _write_outputs(result: TuningResult, opts: TuneOptions, model_path: Path | None,
                   calibration: Sequence[Mapping[str, np.ndarray]]) -> None:
    out = result.output_dir
    if opts.export_qdq and result.best is not None:
        from caloforge.quant.qdq import export_qdq_onnx

        source = Path(opts.qdq_source) if opts.qdq_source is not None else model_path
        result.qdq_onnx_path, result.qdq_status = export_qdq_onnx(
            source, result.best.config, calibration, out / "model_qdq.onnx")
    if opts.report:
        from caloforge.quant.report import write_report

        result.report_path = write_report(result)
    write_json(out / "result.json", result_to_json(result))
