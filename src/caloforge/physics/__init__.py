"""Physics validation: shower observables, the 3DGAN shape metric, CaloChallenge-style metrics,
plots and reports. See ``docs/validation.md`` for the definitions.

Main entry points:

* :func:`event_features` / :func:`features_from_file` -> :class:`FeatureTable` (per event)
* :class:`ShapeMetric`, :func:`metric`, :func:`metric_breakdown` -- the 3DGAN metric
* :func:`separation_power`, :func:`fpd`, :func:`kpd`, :func:`classifier_auc`
* :func:`correlation_difference` -- how the scalar features move together, per energy band
* :func:`compare` (feature tables) and :func:`validate` (files -> metrics.json, plots, report.md)
* :func:`energy_scan` -- per-energy layer-calibrated response/resolution, hits, shower maximum
* :func:`verdict` -- every metric against its MC-vs-MC floor, the ratio, one honest line
* :mod:`caloforge.physics.report` -- markdown tables and embedded plots for any report

Matplotlib is imported only by :mod:`caloforge.physics.plots`.
"""

from caloforge.physics.correlations import correlation_difference
from caloforge.physics.distances import (
    classifier_auc,
    fpd,
    frechet_distance,
    kpd,
    separation_power,
    separation_power_hist,
    standardise,
)
from caloforge.physics.energy_scan import energy_scan
from caloforge.physics.observables import (
    HIT_THRESHOLD_GEV,
    FeatureTable,
    LogHistogram,
    ProfileAccumulator,
    event_features,
    features_from_file,
    moments_from_profiles,
    profiles,
)
from caloforge.physics.shape_metric import (
    DEFAULT_BINS,
    DEFAULT_MIN_EVENTS,
    ShapeMetric,
    ShapeSample,
    metric,
    metric_breakdown,
    shape_sample,
)
from caloforge.physics.validate import compare, validate, write_report
from caloforge.physics.verdict import verdict

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_MIN_EVENTS",
    "HIT_THRESHOLD_GEV",
    "FeatureTable",
    "LogHistogram",
    "ProfileAccumulator",
    "ShapeMetric",
    "ShapeSample",
    "classifier_auc",
    "compare",
    "correlation_difference",
    "energy_scan",
    "event_features",
    "features_from_file",
    "fpd",
    "frechet_distance",
    "kpd",
    "metric",
    "metric_breakdown",
    "moments_from_profiles",
    "profiles",
    "separation_power",
    "separation_power_hist",
    "shape_sample",
    "standardise",
    "validate",
    "verdict",
    "write_report",
]
