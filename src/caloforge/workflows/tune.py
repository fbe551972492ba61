"""Tune the generator in one call: the graph the runtime runs (its exact rewrites applied), the
objective (the default multi-metric criterion of :mod:`caloforge.workflows.criterion`, or the
3DGAN metric alone), then :func:`caloforge.quant.tune`.

The runtime applies its exact rewrites (upsample-convolution and dense folding) to every float
generator before compiling, but runs an already quantized model as it is; tuning therefore starts
from the rewritten graph, so that the tuned model is compared with FP32 and full INT8 on the same
graph. ``rewrite=False`` tunes the ONNX graph as imported (any ONNX model with inputs ``z`` and
``energy``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caloforge.quant import Criterion, Metric, TuneOptions, TuningResult, tune
from caloforge.quant.strategies import DEFAULT_STRATEGY
from caloforge.workflows.criterion import THREEDGAN, MetricSpec
from caloforge.workflows.objective import GanObjective, gan_objective, runtime_graph
from caloforge.workflows.objective_physics import SCAN_EVENTS

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov


@dataclass
class GeneratorTuning:
    """Everything :func:`caloforge.quant.tune` needs for one generator: ``graph`` (the model to
    tune, rewritten or the file itself), ``identity`` (for ``resume``), ``folded`` (layer names
    the rewrite changed), ``objective`` (calibration set and metric), ``source`` (the ONNX)."""

    source: Path
    graph: ov.Model | Path
    identity: str | None
    folded: list[str]
    objective: GanObjective
    result: TuningResult | None = field(default=None)


def prepare_generator_tuning(model: str | os.PathLike[str] | None = None,
                             reference: str | os.PathLike[str] | None = None, *,
                             rewrite: bool = True, calibration_size: int = 200,
                             reference_events: int = 2000, seed: int = 0,
                             criterion: Criterion | Sequence[MetricSpec] | None = None,
                             scan_events: int = SCAN_EVENTS,
                             progress: Callable[[str], None] | None = None) -> GeneratorTuning:
    """The graph to tune and the objective (``model``: ONNX file, ``None``: the shipped model;
    ``reference``: reference showers, ``None``: simulated at the metric's bin energies;
    ``criterion``: metric specs, default :data:`~caloforge.workflows.criterion.DEFAULT_CRITERION`,
    or a :class:`~caloforge.quant.Criterion` for the 3DGAN metric alone; ``scan_events``: showers
    per energy of the per-energy metrics)."""
    from caloforge.gan.shipped import default_onnx_path

    say = progress or (lambda msg: None)
    source = Path(model) if model is not None else default_onnx_path()
    graph: ov.Model | Path = source
    identity: str | None = None
    folded: list[str] = []
    if rewrite:
        graph, identity, folded = runtime_graph(source)
        say(f"tuning the runtime's rewritten graph ({len(folded)} layers folded)")
    what = f"reference {reference}" if reference else \
        f"simulating a {reference_events}-event MC reference"
    say(f"preparing the objective ({what}) ...")
    objective = gan_objective(source, reference, calibration_size=calibration_size,
                              reference_events=reference_events, seed=seed, criterion=criterion,
                              graph=graph if rewrite else None, scan_events=scan_events)
    say(f"objective: {objective.description}; calibration {calibration_size} events over "
        f"{objective.energy_range[0]:g}-{objective.energy_range[1]:g} GeV")
    return GeneratorTuning(source, graph, identity, folded, objective)


def tune_generator(output_dir: str | os.PathLike[str], model: str | os.PathLike[str] | None = None,
                   reference: str | os.PathLike[str] | None = None, *,
                   criterion: Criterion | Sequence[MetricSpec] | None = None,
                   strategy: str = DEFAULT_STRATEGY,
                   rewrite: bool = True, calibration_size: int = 200,
                   reference_events: int = 2000, seed: int = 0, scan_events: int = SCAN_EVENTS,
                   options: TuneOptions | None = None, prepared: GeneratorTuning | None = None,
                   **option_values: Any) -> GeneratorTuning:
    """Tune a generator into ``output_dir``: :func:`prepare_generator_tuning` (or ``prepared``)
    then :func:`caloforge.quant.tune` with the objective's criterion (``criterion``: metric specs,
    default :data:`~caloforge.workflows.criterion.DEFAULT_CRITERION`, or a
    :class:`~caloforge.quant.Criterion` for the 3DGAN metric alone; with ``prepared``, a
    ``Criterion`` judges the 3DGAN metric of that objective), ``strategy`` and ``options`` /
    ``option_values`` (:class:`~caloforge.quant.TuneOptions` fields). The QDQ ONNX export maps
    the rewritten graph back to ``model``. Returns the preparation with ``result`` set."""
    opts = options or TuneOptions()
    t = prepared or prepare_generator_tuning(
        model, reference, rewrite=rewrite, calibration_size=calibration_size,
        reference_events=reference_events, seed=seed, criterion=criterion,
        scan_events=scan_events, progress=option_values.get("progress") or opts.progress)
    option_values.setdefault("model_sha256", t.identity)
    if t.identity is not None:
        option_values.setdefault("qdq_source", t.source)
    t.result = tune(t.graph, t.objective.calibration, t.objective.evaluate,
                    _judged_by(t.objective.criterion, criterion if prepared is not None else None),
                    strategy, output_dir, opts, **option_values)
    return t


def _judged_by(own: Criterion | list[Metric], asked: Criterion | Sequence[MetricSpec] | None
               ) -> Criterion | list[Metric]:
    """The objective's criterion, or a one-metric ``Criterion`` asked for a prepared objective
    (on a multi-metric objective: its 3DGAN metric with that tolerance)."""
    if not isinstance(asked, Criterion):
        return own
    return asked if isinstance(own, Criterion) else [asked.as_metric(THREEDGAN)]
