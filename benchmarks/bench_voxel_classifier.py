"""A low-level classifier test: a neural network on every cell of the shower, beside
``caloforge validate``'s boosted trees on high-level features (issue 15: "another classifier").

    python benchmarks/bench_voxel_classifier.py [--sample uniform|heldout] [--n N]
        [--weights generator.safetensors]
        [--reference MC.h5 --candidate GEN.h5 --floor MC2.h5] [--modes ratio log]
        [--epochs 20] [--out benchmarks/results/voxel]

CaloChallenge-style (the CaloChallenge 2022 evaluation, Krause et al., arXiv 2410.21611, trains a
fully connected network on the voxels to tell generated from reference showers and reports the
ROC AUC on held-out events; 0.5: indistinguishable). Here, not its exact recipe: two hidden
layers of 512, LeakyReLU, dropout 0.2, Adam (lr 2e-4, batch 500), the epoch with the best
validation AUC kept; inputs per event the 15,625 cells and log10 E. The split is by event index,
the same indices in both samples (60/20/20, seed 0): a candidate made at the reference's
energies has each event's twin in the same split, as in ``caloforge validate``'s classifier.
The AUC is the test split's, not folded (below 0.5 would mean the network learned noise).
``--modes``: ``ratio`` the cells over the primary energy (x 100); ``log`` log10 of that, empty
cells 0, standardised per cell on the training split (a cell that never fires there keeps its
scale), so the soft cells count as much as the core. In every sample the cells below the
candidate's threshold (its file's ``cell_threshold_gev``, else 1e-6 GeV) are zero. Each mode is
run on candidate vs reference and on an independent MC (the floor) vs reference.

``--sample uniform`` (default): the issue's sample, ``--n`` (10,000) MC showers uniform in
2-500 GeV (seed 3; floor seed 2); ``heldout``: ``benchmarks/bench_heldout.py``'s eight energies
half-way between the layer-energy library's knots, ``--n`` (8,000) showers over all eight
(seeds 41 / 42). The candidate: the shipped generator (or ``--weights``) in PyTorch FP32 at the
reference's energies, noise seed 777, cells below its threshold zero (as the model card's
validation). Or three files. Prints the CPU; writes ``voxel_classifier.json`` to ``--out``. On 2
cores ~2 minutes per fit, four fits with both modes, plus the samples.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_heldout import ENERGIES as HELDOUT_ENERGIES  # the same held-out energies

DEFAULT_THRESHOLD_GEV = 1e-6


def _threshold(path: Path) -> float:
    """The candidate's cell threshold (its file's ``cell_threshold_gev``), else 1e-6 GeV."""
    from caloforge.data import open_showers

    with open_showers(path) as f:
        value = (getattr(f, "attrs", {}) or {}).get("cell_threshold_gev")
    try:
        return float(value) if value is not None else DEFAULT_THRESHOLD_GEV
    except (TypeError, ValueError):
        return DEFAULT_THRESHOLD_GEV


def _inputs(path: Path, mode: str, threshold: float) -> np.ndarray:
    """(events, cells + 1) float32: the cells over E in the ``mode``'s form, then log10 E."""
    from caloforge.data import open_showers

    with open_showers(path) as f:
        img = np.concatenate([c for c, _ in f.iter_chunks(2000, 0, f.n_events)])
        e = np.asarray(f.energies(), dtype=np.float32)
    cells = img.reshape(len(img), -1).astype(np.float32, copy=False)
    cells = np.where(cells >= threshold, cells, np.float32(0.0))
    cells /= e[:, None]
    if mode == "ratio":
        cells *= np.float32(100.0)
    else:  # log10 of the fraction, an empty cell 0 (a fired one is >= 1e-6 / 500 > 1e-9)
        fired = cells > 0
        np.log10(np.maximum(cells, np.float32(1e-30)), out=cells)
        cells += np.float32(9.0)
        cells[~fired] = 0.0
    return np.hstack([cells, np.log10(e)[:, None]])


def voxel_auc(reference: np.ndarray, sample: np.ndarray, standardise: bool, epochs: int,
              seed: int = 0) -> float:
    """Test ROC AUC of the network telling ``sample`` from ``reference`` (rows: events; the
    split by event index, the same in both)."""
    import torch
    from sklearn.metrics import roc_auc_score

    n = min(len(reference), len(sample))
    x = np.vstack([reference[:n], sample[:n]])
    y = np.r_[np.zeros(n), np.ones(n)].astype(np.float32)
    order = np.random.default_rng(seed).permutation(n)
    parts = order[:int(0.6 * n)], order[int(0.6 * n):int(0.8 * n)], order[int(0.8 * n):]
    train, val, test = (np.r_[idx, idx + n] for idx in parts)
    if standardise:
        mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
        x -= mu
        x /= np.where(sd > 1e-3, sd, 1.0).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
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
        return float(roc_auc_score(y[test], net(xt[test])[:, 0].numpy()))


def _samples(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path, Path]:
    import torch

    from caloforge.data import open_showers
    from caloforge.gan.card_validation import write_generated
    from caloforge.gan.checkpoint import load_generator
    from caloforge.gan.shipped import default_weights_path
    from caloforge.mc import simulate_to_file

    if args.reference:
        return Path(args.reference), Path(args.candidate), Path(args.floor)
    ref, floor, cand = (tmp / n for n in ("mc_ref.h5", "mc_floor.h5", "gen.h5"))
    if args.sample == "heldout":
        for path, seed in ((ref, 41), (floor, 42)):
            simulate_to_file(path, args.n, energies=HELDOUT_ENERGIES, seed=seed, progress=False)
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
    ap.add_argument("--n", type=int, help="showers per sample, all energies together (default "
                    "10000 uniform, 8000 heldout)")
    ap.add_argument("--weights", help="generator weights (default: the shipped model)")
    ap.add_argument("--reference", help="reference MC file (with --candidate and --floor)")
    ap.add_argument("--candidate", help="generated showers at the reference's energies")
    ap.add_argument("--floor", help="an independent MC sample (the MC-vs-MC floor)")
    ap.add_argument("--modes", nargs="+", choices=("ratio", "log"), default=["ratio", "log"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results/voxel")
    args = ap.parse_args()
    if len({bool(args.reference), bool(args.candidate), bool(args.floor)}) > 1:
        ap.error("give all three of --reference, --candidate and --floor, or none")
    if args.n is None:
        args.n = 8000 if args.sample == "heldout" else 10000
    if args.n < 10 or args.epochs < 1:
        ap.error("--n must be >= 10 and --epochs >= 1")

    from caloforge.atomic import write_json
    from caloforge.runtime.bench import cpu_flags, cpu_name

    print(f"CPU: {cpu_name()}; flags: {' '.join(cpu_flags())}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="caloforge-voxel-") as tmp:
        ref, cand, floor = _samples(args, Path(tmp))
        thr = _threshold(cand)
        for mode in args.modes:
            x_ref = _inputs(ref, mode, thr)
            results[mode] = {
                name: voxel_auc(x_ref, _inputs(path, mode, thr), mode == "log", args.epochs)
                for name, path in (("candidate", cand), ("floor", floor))}
            print(f"{mode}: AUC candidate {results[mode]['candidate']:.3f}, "
                  f"floor {results[mode]['floor']:.3f}", flush=True)
        files = {"reference": str(ref), "candidate": str(cand), "floor": str(floor)}
    made = not args.reference
    summary = {"sample": args.sample if made else "files", "n": args.n if made else None,
               "weights": (args.weights or "shipped") if made else None,
               "files": "made in a temporary folder" if made else files,
               "threshold_gev": thr, "epochs": args.epochs, "auc": results,
               "cpu": cpu_name(), "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "voxel_classifier.json", summary)


if __name__ == "__main__":
    main()
