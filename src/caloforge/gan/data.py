"""Streaming, seeded, shardable training batches from a 3DGAN HDF5 file, and the 3DGAN
preprocessing.

The file is never read whole: an epoch visits fixed blocks of ``block_events`` events (aligned to
the file's HDF5 chunks) in a seeded random order, shuffles the events inside each block, and
cuts batches from the stream. Under ``torch.distributed`` every rank sees the same block order
and takes every ``world``-th block (a DistributedSampler over blocks); all ranks run the same
number of batches per epoch (the smallest share), so collective operations never wait forever.

Preprocessing (3DGAN): cells below ``CELL_THRESHOLD_GEV`` (1e-6 GeV) are zeroed, and images are
multiplied by the generator's ``image_scale`` (default 100): caloforge's MC has a sampling
fraction of ~2 %, so a 100 GeV electron leaves ~2 GeV visible, the hottest cell of a 500 GeV
shower is ~0.5 GeV, and in internal units (GeV x 100) the shower core is O(1-50) and the
profiles O(0.1-100) -- well inside float32 and BatchNorm comfort, and the sum regression
(MAPE) is scale-free anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from caloforge.data import open_showers
from caloforge.errors import UserError
from caloforge.facts import CELL_THRESHOLD_GEV  # cells below it are zeroed (3DGAN preprocessing)


def preprocess(images_gev: np.ndarray, image_scale: float) -> np.ndarray:
    """3DGAN preprocessing: zero cells below 1e-6 GeV, then convert to internal units."""
    out = np.where(images_gev < CELL_THRESHOLD_GEV, np.float32(0), images_gev).astype(np.float32)
    out *= np.float32(image_scale)
    return out


class ShowerStream:
    """Seeded, sharded batches of ``(images_internal float32 (B,X,Y,Z), energies_gev (B,))``.

    ``max_events`` uses only the first events of the file. ``epoch_batches(epoch)`` yields the
    batches of one epoch for this rank; the sequence depends only on (seed, epoch, rank, world).
    """

    def __init__(self, path: str | os.PathLike[str], batch_size: int, seed: int,
                 image_scale: float, rank: int = 0, world: int = 1,
                 block_events: int = 512, max_events: int | None = None) -> None:
        self.path = Path(path)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.image_scale = float(image_scale)
        self.rank, self.world = int(rank), int(world)
        with open_showers(self.path) as f:
            if f.grid != (25, 25, 25):
                raise UserError(f"{self.path}: grid {f.grid}; the 3DGAN model needs (25, 25, 25)")
            n = f.n_events
        self.n_events = n if max_events is None else min(n, int(max_events))
        # blocks of block_events; halved (for small files) until every rank gets a batch
        blk = max(1, int(block_events))
        while True:
            self.block_events = blk
            self.blocks = [(lo, min(lo + blk, self.n_events)) for lo in range(0, self.n_events, blk)]
            shares = [sum(b - a for a, b in self.blocks[r::self.world]) for r in range(self.world)]
            self.batches_per_epoch = min(shares) // self.batch_size
            if self.batches_per_epoch > 0 or blk == 1:
                break
            blk = max(1, blk // 2)
        if self.batches_per_epoch == 0:
            raise UserError(
                f"{self.path}: {self.n_events} events are too few for batch size "
                f"{self.batch_size} x {self.world} process(es)"
            )

    def block_order(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, epoch, 0xB10C])
        order = rng.permutation(len(self.blocks))
        return [int(i) for i in order[self.rank::self.world]]

    def epoch_batches(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of ``epoch`` for this rank (exactly ``batches_per_epoch`` of them)."""
        done = 0
        buf_img: list[np.ndarray] = []
        buf_e: list[np.ndarray] = []
        have = 0
        with open_showers(self.path) as f:
            for bi in self.block_order(epoch):
                lo, hi = self.blocks[bi]
                img, e = f.read(lo, hi)
                perm = np.random.default_rng([self.seed, epoch, bi]).permutation(hi - lo)
                buf_img.append(preprocess(img[perm], self.image_scale))
                buf_e.append(e[perm])
                have += hi - lo
                while have >= self.batch_size and done < self.batches_per_epoch:
                    imgs = np.concatenate(buf_img) if len(buf_img) > 1 else buf_img[0]
                    ens = np.concatenate(buf_e) if len(buf_e) > 1 else buf_e[0]
                    yield imgs[:self.batch_size], ens[:self.batch_size]
                    buf_img, buf_e = [imgs[self.batch_size:]], [ens[self.batch_size:]]
                    have -= self.batch_size
                    done += 1
                if done >= self.batches_per_epoch:
                    return


def energy_range_of(path: str | os.PathLike[str], max_events: int | None = None) -> tuple[float, float]:
    """(min, max) primary energy in GeV of the (first ``max_events``) events of a file."""
    with open_showers(path) as f:
        e = f.energies()
    if max_events is not None:
        e = e[:max_events]
    return float(e.min()), float(e.max())


def data_statistics(path: str | os.PathLike[str], image_scale: float, n_events: int = 4000,
                    degree: int = 3, max_events: int | None = None) -> dict[str, list[float]]:
    """Statistics of the training data the losses need (from the first ``n_events`` events).

    * ``sf_poly``: coefficients (highest power first) of a polynomial in ln(E/GeV) fitted to the
      sampling fraction ``sum(image_GeV) / E`` -- the 3DGAN ECAL-sum target is ``E x f(E)``;
    * ``profile_mean_{x,y,z}``: mean profiles per unit primary energy (internal units / GeV),
      used as per-cell weights of the profile-matching loss;
    * ``moment_scale``: mean |m1|, |m2| per axis (cell units), the moment-loss denominators;
    * ``prior``: the mean image per 100 GeV of primary energy (internal units, float32 array
      (25, 25, 25)) for the optional shower prior (not JSON; the caller stores it in the model).
    """
    import torch

    from caloforge.gan.losses import event_moments, profiles

    stop = n_events if max_events is None else min(n_events, max_events)
    sums, ens = [], []
    prof_acc = [np.zeros(25), np.zeros(25), np.zeros(25)]
    prior = np.zeros((25, 25, 25))
    mom_acc = np.zeros((2, 3))
    n_seen = 0
    with open_showers(path) as f:
        for img, e in f.iter_chunks(1000, 0, stop):
            x = preprocess(img, image_scale)
            s = x.reshape(len(x), -1).sum(axis=1, dtype=np.float64) / image_scale
            sums.append(s)
            ens.append(e)
            prior += (x / (e[:, None, None, None] / 100.0)).sum(axis=0)
            xt = torch.from_numpy(x)
            prof = [p.double().numpy() for p in profiles(xt)]
            for a in range(3):
                prof_acc[a] += (prof[a] / e[:, None]).sum(axis=0)
            m = event_moments(xt).double().numpy()
            mom_acc += np.abs(m).sum(axis=0)
            n_seen += len(x)
    s = np.concatenate(sums)
    e = np.concatenate(ens)
    if n_seen < 10:
        raise UserError(f"{path}: too few events ({n_seen}) to fit the sampling fraction")
    ok = s > 0
    deg = min(degree, max(0, len(np.unique(np.round(e[ok], 3))) - 1))
    coef = np.polyfit(np.log(e[ok]), s[ok] / e[ok], deg)
    out: dict[str, list[float]] = {"sf_poly": [float(c) for c in coef]}
    for a, name in enumerate("xyz"):
        out[f"profile_mean_{name}"] = [float(v) for v in prof_acc[a] / n_seen]
    out["moment_scale"] = [float(v) for v in (mom_acc / n_seen).reshape(-1)]
    out["prior"] = (prior / n_seen).astype(np.float32)  # type: ignore[assignment]
    return out


def write_bin_validation_set(path: str | os.PathLike[str], per_bin: int = 80, n_uniform: int = 240,
                             seed: int = 4,
                             centres: tuple[float, ...] = (50, 100, 200, 250, 300, 400, 500)) -> Path:
    """A small MC validation file concentrated in the 3DGAN metric's energy bins: ``per_bin``
    events uniform in each centre +- 5 GeV, then ``n_uniform`` uniform in 2-500 GeV (clipped to
    2-500), simulated with caloforge's MC at ``seed``. Gives every metric bin events at a
    fraction of the cost of a uniform sample (used for the per-epoch score of the shipped model:
    ``python -m caloforge.gan.data OUT.h5``)."""
    from caloforge.data import ShowerWriter
    from caloforge.mc import simulate

    rng = np.random.default_rng(seed)
    e = [c + rng.uniform(-5, 5, per_bin) for c in centres]
    e = np.clip(np.concatenate([*e, rng.uniform(2, 500, n_uniform)]), 2, 500)
    img, e = simulate(e, seed=seed)
    with ShowerWriter(path, attrs={"seed": seed, "generator": "caloforge-mc-gflash",
                                   "energy_spectrum": f"{per_bin} per metric bin (+-5 GeV) + "
                                                      f"{n_uniform} uniform 2-500"}) as w:
        w.append(img, e)
    return Path(path)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(write_bin_validation_set(sys.argv[1]))
