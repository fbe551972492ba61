"""A low-level classifier test: a neural network on every cell of the shower, beside
``caloforge validate``'s boosted trees on high-level features (issue 15: "another classifier").

    python benchmarks/bench_voxel_classifier.py [--sample uniform|heldout] [--n N]
        [--reference MC.h5 --candidate GEN.h5 --floor MC2.h5] [--modes ratio log]
        [--epochs 20] [--out benchmarks/results/voxel]

The CaloChallenge 2022 evaluation (its "cls-low" test, facts in the project's reference notes)
trains a fully connected network, two hidden layers, to tell generated from reference showers
on the voxels themselves and reports the ROC AUC on a held-out split (0.5: indistinguishable).
Here: 2 x 512 LeakyReLU with dropout 0.2, Adam (lr 2e-4, batch 500), the epoch with the best
validation AUC kept; 60/20/20 split of the pooled events (seed 0); inputs per event the 15,625
cells and log10 E. ``--modes``: ``ratio`` the cells over the primary energy (x 100), as the
CaloChallenge feeds them; ``log`` log10 of that, cells below the threshold (1e-6 GeV) 0,
standardised per cell (so the soft cells count as much as the core). Each mode is run on
candidate vs reference and on an independent MC (the floor) vs reference.

``--sample uniform`` (default): the issue's sample, ``--n`` (10,000) MC showers uniform in
2-500 GeV (seed 3; floor seed 2); ``heldout``: ``benchmarks/bench_heldout.py``'s eight energies
half-way between the layer-energy library's knots (seeds 41 / 42). The candidate: the shipped
generator (or ``--weights``) in PyTorch FP32 at the reference's energies, noise seed 777, cells
below its threshold zero (as the model card's validation). Prints the CPU; writes
``voxel_classifier.json`` to ``--out``. ~2 minutes per fit on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLD_GEV = 1e-6


def _inputs(path: Path, mode: str) -> np.ndarray:
    from caloforge.data import open_showers

    with open_showers(path) as f:
        img = np.concatenate([c for c, _ in f.iter_chunks(2000, 0, f.n_events)])
        e = np.asarray(f.energies(), dtype=np.float64)
    cells = np.where(img >= THRESHOLD_GEV, img, 0.0).reshape(len(img), -1) / e[:, None]
    if mode == "ratio":
        v = 100.0 * cells
    else:  # log10 of the fraction, an empty cell 0 (a fired one is >= 1e-6 / 500 > 1e-9)
        v = np.where(cells > 0, np.log10(np.maximum(cells, 1e-30)) + 9.0, 0.0)
    return np.hstack([v, np.log10(e)[:, None]]).astype(np.float32)


def voxel_auc(reference: np.ndarray, sample: np.ndarray, standardise: bool, epochs: int,
              seed: int = 0) -> float:
    """Test ROC AUC of the network telling ``sample`` from ``reference`` (rows: events)."""
    import torch
    from sklearn.metrics import roc_auc_score

    x = np.vstack([reference, sample])
    y = np.r_[np.zeros(len(reference)), np.ones(len(sample))].astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    n = len(y)
    train, val, test = order[:int(0.6 * n)], order[int(0.6 * n):int(0.8 * n)], order[int(0.8 * n):]
    if standardise:
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
        x = (x - mu) / sd
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 512), torch.nn.LeakyReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 512), torch.nn.LeakyReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 1))
    opt = torch.optim.Adam(net.parameters(), lr=2e-4)
    best, state = -1.0, None
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.from_numpy(train)[torch.randperm(len(train), generator=gen)]
        for i in range(0, len(perm), 500):
            idx = perm[i:i + 500]
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt[idx])[:, 0], yt[idx])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            auc = roc_auc_score(y[val], net(xt[val])[:, 0].numpy())
        if auc > best:
            best, state = auc, {k: v.clone() for k, v in net.state_dict().items()}
    assert state is not None
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        auc = float(roc_auc_score(y[test], net(xt[test])[:, 0].numpy()))
    return max(auc, 1.0 - auc)


def _samples(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path, Path]:
    import torch

    from caloforge.data import open_showers
    from caloforge.gan.card_validation import write_generated
    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.shipped import default_weights_path
    from caloforge.mc import simulate_to_file

    if args.reference and args.candidate and args.floor:
        return Path(args.reference), Path(args.candidate), Path(args.floor)
    ref, floor, cand = (tmp / n for n in ("mc_ref.h5", "mc_floor.h5", "gen.h5"))
    if args.sample == "heldout":
        knots = np.geomspace(2.0, 500.0, 64)
        energies = knots[[3, 11, 19, 27, 35, 43, 51, 59]] * np.sqrt(knots[1] / knots[0])
        for path, seed in ((ref, 41), (floor, 42)):
            simulate_to_file(path, args.n, energies=energies, seed=seed, progress=False)
    else:
        for path, seed in ((ref, 3), (floor, 2)):
            simulate_to_file(path, args.n, energy_range=(2.0, 500.0), seed=seed, progress=False)
    with open_showers(ref) as f:
        e = f.energies()
    with torch.no_grad():
        write_generated(load_generator(args.weights or str(default_weights_path())).eval(), e,
                        cand, seed=777)
    return ref, cand, floor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", choices=("uniform", "heldout"), default="uniform")
    ap.add_argument("--n", type=int, default=10000, help="showers per sample (default 10000)")
    ap.add_argument("--weights", help="generator weights (default: the shipped model)")
    ap.add_argument("--reference", help="reference MC file (with --candidate and --floor)")
    ap.add_argument("--candidate")
    ap.add_argument("--floor")
    ap.add_argument("--modes", nargs="+", choices=("ratio", "log"), default=["ratio", "log"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/voxel")
    args = ap.parse_args()

    import torch

    from caloforge.atomic import write_json
    from caloforge.runtime.bench import cpu_flags, cpu_name

    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"CPU: {cpu_name()}; flags: {' '.join(cpu_flags())}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="caloforge-voxel-") as tmp:
        ref, cand, floor = _samples(args, Path(tmp))
        for mode in args.modes:
            x_ref = _inputs(ref, mode)
            results[mode] = {
                name: voxel_auc(x_ref, _inputs(path, mode), mode == "log", args.epochs)
                for name, path in (("candidate", cand), ("floor", floor))}
            print(f"{mode}: AUC candidate {results[mode]['candidate']:.3f}, "
                  f"floor {results[mode]['floor']:.3f}", flush=True)
        files = {"reference": str(ref), "candidate": str(cand), "floor": str(floor)}
    summary = {"sample": args.sample, "n": args.n, "epochs": args.epochs, "auc": results,
               "files": files if args.reference else "made in a temporary folder",
               "cpu": cpu_name(), "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "voxel_classifier.json", summary)


if __name__ == "__main__":
    main()
