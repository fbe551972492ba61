"""Showers per second of the GFlash Monte Carlo (CLIC ECAL, 25x25x25), one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_mc.py [--n 200] [--energies 10,50,100,200,500]
    OMP_NUM_THREADS=1 python benchmarks/bench_mc.py --figures [--n 600]

Prints showers/s per primary energy (best of ``--repeat`` runs, after a warm-up), from the wall
clock and from the process CPU time (the latter is less sensitive to other jobs on a shared
machine). The goal is >= 200 showers/s at 100 GeV on one core. ``--figures`` instead prints the physics figures of
docs/mc.md (shower maximum, containment, sampling fraction, resolutions) for ``--n`` showers
per energy.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from caloforge.mc import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="showers per energy and run")
    ap.add_argument("--energies", default="10,50,100,200,500", help="GeV, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="runs per energy (best is reported)")
    ap.add_argument("--figures", action="store_true", help="print the physics figures instead")
    args = ap.parse_args()
    if args.figures:
        figures([float(v) for v in args.energies.split(",")], args.n)
        return
    simulate(np.full(5, 50.0), seed=0)  # warm-up (imports, detector constants)
    print(f"{'E [GeV]':>8} {'showers/s':>10} {'ms/shower':>10} {'showers/s (CPU time)':>21}")
    for e in (float(v) for v in args.energies.split(",")):
        best = best_cpu = np.inf
        for r in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            simulate(np.full(args.n, e), seed=r)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        print(f"{e:8.0f} {args.n / best:10.0f} {1e3 * best / args.n:10.2f} "
              f"{args.n / best_cpu:21.0f}", flush=True)


def figures(energies: list[float], n: int) -> None:
    from scipy import stats
    from scipy.optimize import curve_fit

    from caloforge.detector import SILICON, TUNGSTEN, clic_ecal, sampling_ecal

    det = clic_ecal()
    edges = np.asarray(det.layer_edges_x0)
    f = np.asarray(det.layer_sampling_fraction)

    def model(_, amp, a, b):
        return amp * np.diff(stats.gamma.cdf(edges, a, scale=1.0 / b))

    t_fit, res = [], []
    print("E[GeV] T_fit  <T>   in1RM  5x5    Evis/E   /f     Evis/sum(f dE) "
          "res_raw res_cal res_samp leak_back leak_side")
    for e in energies:
        im, en, b = simulate(np.full(n, e), seed=int(e) + 100, return_bookkeeping=True)
        lay = im.sum(axis=(1, 2), dtype=np.float64) / f
        prof, err = lay.mean(0), lay.std(0) / np.sqrt(n)
        p, _ = curve_fit(model, None, prof, p0=(prof.sum(), 4, 0.5),
                         sigma=np.maximum(err, 1e-3 * prof.max()))
        t_fit.append((p[1] - 1) / p[2])
        vis, cal = b["visible"], lay.sum(1)
        samp = vis / b["expected_visible"]
        r = (vis.std() / vis.mean(), cal.std() / cal.mean(), samp.std() / samp.mean())
        res.append(r)
        core = (im[:, 10:15, 10:15].sum(axis=(1, 2, 3)) / vis).mean()
        print(f"{e:6.0f} {t_fit[-1]:5.2f} {b['T'].mean():5.2f} {(b['within_1rm'] / en).mean():.4f}"
              f" {core:.4f} {(vis / en).mean():.5f} {(vis / en).mean() / det.sampling_fraction:.4f}"
              f" {samp.mean():.4f}         {r[0]:.4f}  {r[1]:.4f}  {r[2]:.4f}   "
              f"{(b['leak_back'] / en).mean():.4f}    {(b['leak_side'] / en).mean():.4f}")
    le = np.log(energies)
    print(f"shower-max slope dT/dlnE = {np.polyfit(le, t_fit, 1)[0]:.3f} X0")
    rr = np.log(np.array(res))
    for k, name in enumerate(("raw", "layer-calibrated", "sampling-only")):
        print(f"resolution exponent ({name}): {np.polyfit(le, rr[:, k], 1)[0]:.3f}")
    uni = sampling_ecal("uniform W/Si", TUNGSTEN, SILICON, [(34, 2.4)], 0.5, 5.1)
    for e in energies:
        im, en = simulate(np.full(n, e), seed=7, detector=uni)
        v = im.sum(axis=(1, 2, 3), dtype=np.float64)
        print(f"uniform W/Si {e:5.0f} GeV: E_vis/E / f = {(v / en).mean() / uni.sampling_fraction:.4f}"
              f", sigma/E = {v.std() / v.mean():.4f} (c_S/sqrt(E) = "
              f"{uni.layers[0].c_S / np.sqrt(e):.4f})")


if __name__ == "__main__":
    main()
