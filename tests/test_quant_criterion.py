"""The generator's multi-metric criterion (caloforge.workflows.criterion / objective_physics).

A "synthetic quantization" is the FP32 generator with its output changed in one known way
(energy scale x1.02; a few extra cells above the 10 keV hit threshold in showers below 50 GeV).
Independent expectations: a 2% scale change moves E_cal/E by exactly 2% in every bin (E_cal is
linear in the cells) and leaves the shower shapes -- which is all the 3DGAN metric sees, apart
from the profiles' relative differences -- nearly unchanged; extra hits below 50 GeV are outside
every bin of the 3DGAN metric (50-500 GeV) so its value cannot change at all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from caloforge.errors import UserError
from caloforge.quant import Metric, Objective
from caloforge.workflows.criterion import (
    DEFAULT_CRITERION,
    MetricSpec,
    load_criterion_file,
    parse_criterion,
    resolve,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Altered:
    """A compiled FP32 generator whose showers pass through ``change(images, energies)``."""

    def __init__(self, compiled, change):
        self.compiled, self.change = compiled, change

    def __call__(self, inputs):
        images = np.asarray(self.compiled(inputs)[0])
        return [self.change(images, np.asarray(inputs["energy"]).reshape(-1))]


def _extra_hits(images, energies, every=500, cell_gev=2e-5):
    """Set every ``every``-th empty cell of the showers below 50 GeV to ``cell_gev`` (20 keV:
    above the energy scan's 10 keV hit threshold)."""
    out = np.array(images, copy=True)
    low = energies < 50.0
    if not low.any():
        return out
    flat = out[low].reshape(int(low.sum()), -1)
    pattern = (np.arange(flat.shape[1]) % every) == 0
    flat[(flat == 0) & pattern] = cell_gev
    out[low] = flat.reshape(out[low].shape)
    return out


@pytest.fixture(scope="module")
def gan():
    """The shipped generator's default objective, tiny: 210 MC reference events for the 3DGAN
    metric (30 per bin), 30 showers per scan energy."""
    from caloforge.ovgraph import compile_model
    from caloforge.workflows import prepare_generator_tuning

    t = prepare_generator_tuning(None, None, calibration_size=2, reference_events=210,
                                 scan_events=30)
    fp32 = compile_model(t.graph, hint="f32")
    objective = Objective(t.objective.evaluate, t.objective.criterion)
    return t, fp32, objective, objective.measure(fp32)


def _judge(gan, change):
    _t, fp32, objective, base = gan
    values = objective.measure(Altered(fp32, change))
    alone = Metric("3dgan", 0.01)  # the criterion before multi-metric criteria
    return values, base, alone.passes(values["3dgan"], base["3dgan"]), objective


def test_default_criterion_has_every_metric_of_the_issue(gan):
    t, _, objective, base = gan
    names = objective.names
    assert names[0] == "3dgan" and names[-1] == "fpd"
    for family, tol in (("response", 0.005), ("width", 0.05), ("hits", 0.02)):
        per = [m for m in objective.metrics if m.name.startswith(family + "@")]
        assert [m.name for m in per] == [f"{family}@{e}GeV" for e in (6, 25, 90, 180, 420)]
        assert all(m.tolerance == tol and m.relative and m.direction == "both" for m in per)
    fpd = objective.metrics[-1]
    assert not fpd.relative and fpd.tolerance == pytest.approx(t.objective.fpd_floor, rel=5e-3)
    assert fpd.tolerance > 0
    assert base["fpd"] == pytest.approx(0.0, abs=1e-9)  # FP32 vs itself on the same noise
    # a candidate identical to FP32 passes with slack 1 (as good as FP32) on every metric
    assert objective.passes(base, base) and objective.slack(base, base) == pytest.approx(1.0)


def test_energy_scale_shift_passes_3dgan_alone_but_not_the_default(gan):
    values, base, alone, objective = _judge(gan, lambda img, e: img * 1.02)
    assert alone, (values["3dgan"], base["3dgan"])
    for e in (6, 25, 90, 180, 420):  # E_cal is linear in the cells: exactly +2%
        assert values[f"response@{e}GeV"] / base[f"response@{e}GeV"] == pytest.approx(1.02,
                                                                                      rel=1e-5)
        assert values[f"width@{e}GeV"] == pytest.approx(base[f"width@{e}GeV"], rel=1e-4)
    assert not objective.passes(values, base)
    assert objective.limiting(values, base).startswith("response@")
    # 2% against 0.5% allowed: normalised slack (0.005 - 0.02) / 0.005 = -3
    assert objective.slack(values, base) == pytest.approx(-3.0, rel=1e-3)


def test_extra_hits_pass_3dgan_alone_but_not_the_default(gan):
    values, base, alone, objective = _judge(gan, _extra_hits)
    assert alone and values["3dgan"] == base["3dgan"]  # no 3DGAN bin below 50 GeV
    assert values["hits@6GeV"] > 1.02 * base["hits@6GeV"]
    assert values["hits@420GeV"] == base["hits@420GeV"]
    assert not objective.passes(values, base)
    assert objective.limiting(values, base) in ("hits@6GeV", "hits@25GeV")


def test_criterion_syntax():
    specs = parse_criterion(["3dgan:1%", "response@6GeV:0.5%", "width:0.001abs", "fpd:floor",
                             "hits@25:3"])
    assert specs == [MetricSpec("3dgan", 0.01), MetricSpec("response@6gev", 0.005),
                     MetricSpec("width", 0.001, relative=False),
                     MetricSpec("fpd", None, relative=False, floor=True),
                     MetricSpec("hits@25", 3.0, relative=False)]
    metrics = {m.name: m for m in resolve(specs, [6.0, 25.0], fpd_floor=2.5)}
    assert set(metrics) == {"3dgan", "response@6GeV", "width@6GeV", "width@25GeV", "hits@25GeV",
                            "fpd"}
    assert metrics["fpd"].tolerance == 2.5 and metrics["fpd"].direction == "lower"
    # later entries override earlier ones; "default" is the default criterion
    over = resolve(parse_criterion(["default", "response@6:2%"]), [6.0, 25.0], 1.0)
    by = {m.name: m for m in over}
    assert by["response@6GeV"].tolerance == 0.02 and by["response@25GeV"].tolerance == 0.005
    assert len(over) == 1 + 3 * 2 + 1 and len(DEFAULT_CRITERION) == 5
    for bad, words in (("3dgan", "NAME:TOLERANCE"), ("auc:0.55", "unknown metric"),
                       ("3dgan:-1%", "tolerance"), ("3dgan:floor", "fpd only"),
                       ("fpd@6:1%", "no energy bins"), ("width:1x", "tolerance")):
        with pytest.raises(UserError, match=words):
            parse_criterion([bad])
    with pytest.raises(UserError, match="no such energy bin"):
        resolve(parse_criterion(["response@7:1%"]), [6.0, 25.0], 1.0)


def test_criterion_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('metric = [{name = "default"}, {name = "hits", tolerance = "5%"},\n'
                    '          {name = "3dgan", tolerance = 0.002}]\n')
    specs = load_criterion_file(toml)
    assert specs[-2:] == [MetricSpec("hits", 0.05), MetricSpec("3dgan", 0.002, relative=False)]
    js = tmp_path / "c.json"
    js.write_text('{"metric": [{"name": "response", "tolerance": "0.5%"}]}')
    assert load_criterion_file(js) == [MetricSpec("response", 0.005)]
    for text, words in (('{"metric": []}', "non-empty"), ('{"metric": [{"name": "3dgan"}]}',
                        "no tolerance"), ("{", "not a valid JSON"),
                        ('{"metric": [{"name": "3dgan", "tol": 1}]}', "expected keys")):
        js.write_text(text)
        with pytest.raises(UserError, match=words):
            load_criterion_file(js)


def test_two_sided_metric_and_zero_tolerance():
    m = Metric("r", 0.01, direction="both")  # |value - 1| <= 0.01
    assert m.passes(1.009, 1.0) and m.passes(0.991, 1.0)
    assert not m.passes(1.011, 1.0) and not m.passes(0.989, 1.0)
    assert m.normalised_slack(1.0, 1.0) == pytest.approx(1.0)
    assert m.normalised_slack(1.02, 1.0) == pytest.approx(-1.0)
    z = Metric("z", 0.0, relative=False)
    assert z.normalised_slack(1.0, 1.0) == 0.0 and z.normalised_slack(1.1, 1.0) == -math.inf
    assert not m.passes(math.nan, 1.0)


def test_cli_criterion_flags_are_one_line_errors(tmp_path, capsys):
    from caloforge.cli import main

    out = tmp_path / "o"
    assert main(["quantize", "--output", str(out), "--criterion", "auc:0.55"]) == 2
    assert "--criterion 'auc:0.55': unknown metric" in capsys.readouterr().err
    assert main(["quantize", "--output", str(out), "--criterion", "3dgan:1%",
                 "--tolerance", "0.01"]) == 2
    assert "--tolerance" in capsys.readouterr().err
    bad = tmp_path / "c.toml"
    bad.write_text("metric = 3")
    assert main(["quantize", "--output", str(out), "--criterion-file", str(bad)]) == 2
    assert "expected a non-empty list" in capsys.readouterr().err
    assert not out.exists()


def test_cli_hands_the_criterion_to_the_objective(tmp_path, monkeypatch, capsys):
    from caloforge.cli import main
    from caloforge.quant import Criterion
    from caloforge.workflows import tune

    seen: list[dict] = []

    def fake_objective(model, reference, **kw):
        seen.append(kw)
        raise UserError("objective not built in this test")

    monkeypatch.setattr(tune, "gan_objective", fake_objective)
    out = str(tmp_path / "o")
    assert main(["quantize", "--output", out, "--criterion", "default", "--criterion",
                 "width@6GeV:10%", "--scan-events", "50"]) == 2
    assert seen[-1]["criterion"] == [*DEFAULT_CRITERION, MetricSpec("width@6gev", 0.10)]
    assert seen[-1]["scan_events"] == 50
    assert main(["quantize", "--output", out]) == 2  # no flag: the default criterion
    assert seen[-1]["criterion"] is None
    assert main(["quantize", "--output", out, "--tolerance", "0.02", "--absolute"]) == 2
    assert seen[-1]["criterion"] == Criterion(0.02, relative=False)
    capsys.readouterr()
