"""What combines stages: tune the generator, the bench, the tuning objective.

- :func:`tune_generator` / :func:`prepare_generator_tuning` (:mod:`~caloforge.workflows.tune`):
  the runtime's rewritten graph, the 3DGAN-metric objective, :func:`caloforge.quant.tune`.
- :mod:`~caloforge.workflows.objective`: calibration inputs, reference showers and the metric
  for tuning a generator (:func:`gan_objective`, :func:`runtime_graph`).
- :func:`run_bench` (:mod:`~caloforge.workflows.bench`): the one bench (PyTorch / OpenVINO
  FP32 / BF16 / INT8 / a tuned model, layouts, MC, physics), typed rows
  (:class:`BenchRow`, :class:`BenchReport`); used by ``caloforge bench``, the demo and
  ``benchmarks/bench_engine.py``.
"""

from caloforge.workflows.bench import BenchOptions, run_bench
from caloforge.workflows.bench_report import format_table, plot, write_outputs
from caloforge.workflows.bench_rows import TUNED, BenchReport, BenchRow, BenchSummary, McRate
from caloforge.workflows.objective import (
    BIN_ENERGIES_GEV,
    GanObjective,
    gan_objective,
    runtime_graph,
    trained_energy_range,
)
from caloforge.workflows.tune import GeneratorTuning, prepare_generator_tuning, tune_generator

__all__ = [
    "BIN_ENERGIES_GEV", "TUNED", "BenchOptions", "BenchReport", "BenchRow", "BenchSummary",
    "GanObjective", "GeneratorTuning", "McRate", "format_table", "gan_objective", "plot", "prepare_generator_tuning",
    "run_bench", "runtime_graph", "trained_energy_range", "tune_generator", "write_outputs",
]
