"""A preview of issue 15's held-out check: energies the layer-energy library has no knot at, and
a second classifier beside ``caloforge validate``'s boosted trees.

    python benchmarks/bench_heldout.py [--weights generator.safetensors] [--n 8000]
        [--out benchmarks/results/heldout]

MC at eight energies half-way in ln E between the library's knots (64 knots equal in ln E over
2-500 GeV: knots 3, 11, ..., 59 times sqrt(knot ratio), 2.7-368 GeV), ``--n`` showers each for
the reference (seed 41) and the floor (seed 42); the generator's showers at the reference's
energies (PyTorch FP32, noise seed 777, cells below its threshold zero, as the model card's).
Runs ``caloforge.physics.validate`` (every metric beside its floor) and an MLP classifier
(sklearn, 2 x 128, early stopping, on quantile-normalised high-level features and ln E; 70/30
split, seed 0) on candidate and floor against the reference. Prints the CPU. Writes ``heldout.json`` and the validation folder (``report.md``,
``metrics.json``) to ``--out``; the samples live in a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

KNOTS = np.geomspace(2.0, 500.0, 64)
ENERGIES = KNOTS[[3, 11, 19, 27, 35, 43, 51, 59]] * np.sqrt(KNOTS[1] / KNOTS[0])


def _high_level(path: Path) -> np.ndarray:
    from caloforge.data import open_showers
    from caloforge.physics.observables import event_features

    with open_showers(path) as f:
        img = np.concatenate([c for c, _ in f.iter_chunks(2000, 0, f.n_events)])
        e = f.energies()
    img = np.where(img >= 1e-6, img, 0.0)
    x, _ = event_features(img, e).high_level()
    return np.hstack([x, np.log(e)[:, None]])


def mlp_auc(reference: np.ndarray, sample: np.ndarray, seed: int = 0) -> float:
    """ROC AUC of an MLP telling ``sample`` from ``reference`` (rows: events)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import QuantileTransformer

    x = np.vstack([reference, sample])
    y = np.r_[np.zeros(len(reference)), np.ones(len(sample))]
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:int(0.3 * len(y))], order[int(0.3 * len(y)):]
    q = QuantileTransformer(output_distribution="normal", random_state=seed).fit(x[train])
    clf = MLPClassifier(hidden_layer_sizes=(128, 128), max_iter=200, early_stopping=True,
                        random_state=seed).fit(q.transform(x[train]), y[train])
    return float(roc_auc_score(y[test], clf.predict_proba(q.transform(x[test]))[:, 1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="generator weights (default: the shipped model)")
    ap.add_argument("--n", type=int, default=8000, help="showers per sample (default 8000)")
    ap.add_argument("--out", default="benchmarks/results/heldout")
    args = ap.parse_args()

    import torch

    from caloforge.atomic import write_json
    from caloforge.data import open_showers
    from caloforge.gan.card_validation import write_generated
    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.shipped import default_weights_path
    from caloforge.mc import simulate_to_file
    from caloforge.physics import validate
    from caloforge.runtime.bench import cpu_flags, cpu_name

    print(f"CPU: {cpu_name()}; flags: {' '.join(cpu_flags())}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    weights = args.weights or str(default_weights_path())
    with tempfile.TemporaryDirectory(prefix="caloforge-heldout-") as tmp:  # ~75 MB per sample
        ref, floor, cand = (Path(tmp) / n for n in ("mc_seed41.h5", "mc_seed42.h5", "gen.h5"))
        for path, seed in ((ref, 41), (floor, 42)):
            simulate_to_file(path, args.n, energies=ENERGIES, seed=seed, progress=False)
        with open_showers(ref) as f:
            energies = f.energies()
        with torch.no_grad():
            write_generated(load_generator(weights).eval(), energies, cand, seed=777)
        res = validate(ref, cand, out / "validate", floor_path=floor, plots=False)
        x_ref = _high_level(ref)
        mlp = {"candidate": mlp_auc(x_ref, _high_level(cand)),
               "floor": mlp_auc(x_ref, _high_level(floor))}
    summary = {"energies_gev": [round(float(e), 3) for e in ENERGIES], "n": args.n,
               "weights": weights, "verdict": res["verdict"]["line"],
               "trees_auc": res["candidate_vs_reference"].get("classifier_auc"),
               "trees_auc_floor": (res.get("floor_vs_reference") or {}).get("classifier_auc"),
               "mlp_auc": mlp, "seconds": time.perf_counter() - t0}
    write_json(out / "heldout.json", summary)
    print(f"energies {summary['energies_gev']} GeV, {args.n} showers each")
    print(f"trees AUC {summary['trees_auc']:.3f} (floor {summary['trees_auc_floor']:.3f}); "
          f"MLP AUC {mlp['candidate']:.3f} (floor {mlp['floor']:.3f})")
    print(f"verdict: {summary['verdict']}")


if __name__ == "__main__":
    main()
