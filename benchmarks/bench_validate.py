"""Benchmark the validation metrics: the 3DGAN shape metric on 10k vs 10k showers, the
classifier AUC and the other high-level metrics.

    python benchmarks/bench_validate.py [--n 10000] [--toy] [--cache /tmp/caloforge_bench_validate]

Showers come from caloforge's GFlash MC (seeds 1 and 2, energies uniform 2-500 GeV, the same
energies in both samples), made once and cached as HDF5 under ``--cache``; ``--toy`` uses the
analytic toy generator instead (seconds instead of minutes to make). Target: the shape metric
on 10k vs 10k in < 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _sample(cache: Path, n: int, toy: bool) -> list[Path]:
    from caloforge.data import write_showers
    from caloforge.facts import TRAINED_ENERGY_RANGE_GEV

    cache.mkdir(parents=True, exist_ok=True)
    kind = "toy" if toy else "mc"
    paths = [cache / f"{kind}_{n}_seed{s}.h5" for s in (1, 2)]
    energies = np.random.default_rng(12345).uniform(*TRAINED_ENERGY_RANGE_GEV, n)
    for seed, p in zip((1, 2), paths, strict=True):
        if p.exists():
            continue
        t0 = time.perf_counter()
        if toy:
            from caloforge.physics.toy import toy_showers

            images = toy_showers(energies, seed=seed)
        else:
            from caloforge.mc import simulate

            images, _ = simulate(energies, seed=seed)
        write_showers(p, images, energies)
        print(f"made {p} ({n} showers) in {time.perf_counter() - t0:.1f} s")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000, help="showers per sample (default 10000)")
    ap.add_argument("--toy", action="store_true", help="analytic toy showers instead of the MC")
    ap.add_argument("--cache", default="/tmp/caloforge_bench_validate", help="cache folder")
    ap.add_argument("--files", nargs=2, metavar=("REF.h5", "CAND.h5"),
                    help="use these two shower files instead of making samples")
    args = ap.parse_args()

    from caloforge.data import read_showers
    from caloforge.physics import ShapeMetric, classifier_auc, compare, event_features

    if args.files:
        ref_path, cand_path = (Path(p) for p in args.files)
    else:
        ref_path, cand_path = _sample(Path(args.cache), args.n, args.toy)
    ref = read_showers(ref_path, args.n)
    cand = read_showers(cand_path, args.n)
    n_ref, n_cand = len(ref[1]), len(cand[1])

    t0 = time.perf_counter()
    sm = ShapeMetric(ref)
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    value = sm(cand)
    t_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    value2 = ShapeMetric(ref)(cand)
    t_both = time.perf_counter() - t0
    assert value == value2
    print(f"3DGAN shape metric {n_ref} vs {n_cand}: {value:.5f}")
    print(f"  ShapeMetric(reference) precompute: {t_ref:.2f} s")
    print(f"  call on the candidate:             {t_call:.2f} s  ({n_cand / t_call:,.0f} events/s)")
    print(f"  reference + candidate from images: {t_both:.2f} s  "
          f"({(n_ref + n_cand) / t_both:,.0f} events/s)  target < 10 s")

    t0 = time.perf_counter()
    tr = event_features(*ref)
    tc = event_features(*cand)
    t_feat = time.perf_counter() - t0
    print(f"per-event feature tables: {t_feat:.2f} s ({(n_ref + n_cand) / t_feat:,.0f} events/s)")
    del ref, cand

    xr, _ = tr.high_level()
    xc, _ = tc.high_level()
    er, ec = np.log(tr["e_primary"])[:, None], np.log(tc["e_primary"])[:, None]
    t0 = time.perf_counter()
    auc = classifier_auc(np.hstack([xr, er]), np.hstack([xc, ec]), seed=0)
    t_auc = time.perf_counter() - t0
    print(f"classifier AUC {auc['auc']:.4f} ({xr.shape[1] + 1} features, {auc['n_train']} train / "
          f"{auc['n_test']} test): {t_auc:.1f} s  target < 60 s")

    t0 = time.perf_counter()
    res = compare(tr, tc, seed=0, classifier=False, shape_metric=sm)
    t_cmp = time.perf_counter() - t0
    tm = res["timing_s"]
    print(f"separation powers + FPD + KPD: {t_cmp:.1f} s (sep {tm['separation_power']:.1f}, "
          f"FPD {tm['fpd']:.1f}, KPD {tm['kpd']:.1f}); mean S {res['sep_power_mean']:.4f}, "
          f"FPD {res['fpd']:.4g} ± {res['fpd_error']:.2g}, KPD {res['kpd']:.3g} ± {res['kpd_error']:.2g}")


if __name__ == "__main__":
    main()
