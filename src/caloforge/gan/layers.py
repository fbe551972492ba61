"""Layer energies of a shower from an empirical library: the first factor of a factorised generator.

CaloFlow (Krause & Shih, arXiv 2106.05285) writes the density of a shower as
``p(layer energies | E) x p(shape | layer energies, E)`` and learns the two factors separately:
the energy deposited per layer fixes the calibrated response, its resolution and the
longitudinal profile (the shower maximum), exactly the per-energy quantities a physicist
calibrates on, and the hardest ones for an adversarially trained image generator to get right.
Here the first factor is not learned but *tabulated* from MC (like the frozen-shower libraries
of ATLAS' forward calorimeter, which replay stored Geant4 showers): at ``K`` energies equally
spaced in ``ln E`` the library keeps the layer-energy vectors of ``M`` MC events, as fractions
``r_l = E_l / E`` of their primary energy. A shower at energy ``E`` draws

* a knot: the lower or the upper neighbour of ``ln E``, the upper one with probability equal to
  the fractional position of ``ln E`` between them (so the distribution is interpolated linearly
  in ``ln E``);
* an entry of that knot, uniformly;

and takes ``r x E`` as its layer energies. The two choices come from the last two numbers of
the generator's latent vector (standard normal, turned uniform by the normal CDF), so the
exported graph keeps "same seed, same showers". The image generator then supplies the shape:
its output is rescaled per layer to these energies (:func:`rescale_layers`). During training the
layer energies are those of the real shower the fake one is compared with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from caloforge.errors import UserError
from caloforge.gan.layer_rules import radial_width2

#: Default library size: 64 energies x 256 events (1.6 MB of float32 in the model file).
LIBRARY_KNOTS = 64
LIBRARY_ENTRIES = 256
#: Latent numbers the sampler consumes (the last two of ``z``).
SAMPLER_LATENT = 2


def _uniform(z: torch.Tensor) -> torch.Tensor:
    """Standard normal -> uniform on (0, 1) (the normal CDF)."""
    return 0.5 * (1.0 + torch.erf(z * (1.0 / math.sqrt(2.0))))


class LayerEnergySampler(nn.Module):
    """``forward(z2, energy)`` -> (B, Z) layer energies in GeV; ``z2`` (B, 2) standard normal.

    Buffers: ``table`` (K, M, Z) fractions ``E_l / E``, ``counts`` (K,) entries filled per knot
    (the rest of a row repeats them), ``knots`` (K,) ascending ``ln(E / GeV)``, equally spaced.
    With ``stats``, also each entry's hits above the threshold ``hits`` and radial width^2
    ``width2`` per layer (K, M, Z), float16 (exact for counts up to 2048; widths to 1e-3), that
    :meth:`draw` returns with the energies (:mod:`caloforge.gan.layer_rules`)."""

    table: torch.Tensor
    counts: torch.Tensor
    knots: torch.Tensor
    hits: torch.Tensor
    width2: torch.Tensor
    hit_slope: torch.Tensor

    def __init__(self, knots: int = LIBRARY_KNOTS, entries: int = LIBRARY_ENTRIES,
                 layers: int = 25, stats: bool = False) -> None:
        super().__init__()
        if knots < 2 or entries < 1:
            raise ValueError("knots must be >= 2 and entries >= 1")
        self.register_buffer("table", torch.zeros(knots, entries, layers))
        self.register_buffer("counts", torch.ones(knots))
        self.register_buffer("knots", torch.linspace(math.log(2.0), math.log(500.0), knots))
        #: whether the entries also carry hit counts and widths per layer
        self.stats = bool(stats)
        if self.stats:
            self.register_buffer("hits", torch.zeros(knots, entries, layers, dtype=torch.float16))
            self.register_buffer("width2", torch.zeros(knots, entries, layers,
                                                       dtype=torch.float16))
            #: (K, Z) slope of the mean ln(hits + 1) in ln E at each knot, set by :meth:`fill`
            #: (:meth:`draw`, :meth:`_hit_slope`)
            self.register_buffer("hit_slope", torch.zeros(knots, layers))

    def fill_library(self, library: dict[str, np.ndarray]) -> None:
        """:meth:`fill` from :func:`build_library`'s output (its hits and widths only if this
        sampler keeps them)."""
        extra = ([torch.as_tensor(library["hits"]), torch.as_tensor(library["width2"])]
                 if self.stats else [])
        self.fill(*(torch.as_tensor(library[k]) for k in ("table", "counts", "knots")), *extra)

    def fill(self, table: torch.Tensor, counts: torch.Tensor, knots: torch.Tensor,
             hits: torch.Tensor | None = None, width2: torch.Tensor | None = None) -> None:
        if tuple(table.shape) != tuple(self.table.shape):
            raise ValueError(f"library table {tuple(table.shape)}, expected "
                             f"{tuple(self.table.shape)}")
        if self.stats and (hits is None or width2 is None):
            raise ValueError("this library keeps hits and widths per entry: give both")
        with torch.no_grad():
            self.table.copy_(table)
            self.counts.copy_(counts)
            self.knots.copy_(knots)
            if self.stats:
                self.hits.copy_(torch.as_tensor(hits).reshape(self.hits.shape))
                self.width2.copy_(torch.as_tensor(width2).reshape(self.width2.shape))
                self.hit_slope.copy_(self._hit_slope())

    def _hit_slope(self, half_window: int = 4) -> torch.Tensor:
        """(K, Z): ``d <ln(hits + 1)> / d ln E`` at each knot, the least-squares slope of the
        knots' means (over their filled entries) within +-``half_window`` knots (fewer at the
        ends). Why a window: one knot's mean of 1,280 entries is uncertain by ~0.01, a slope
        from two neighbours 9% apart in E by ~0.1."""
        M, K = self.table.shape[1], self.table.shape[0]
        filled = (torch.arange(M, device=self.hits.device)[None, :] < self.counts[:, None])
        logs = torch.log(self.hits.double() + 1.0) * filled[:, :, None]
        mean = logs.sum(dim=1) / self.counts.double()[:, None]                     # (K, Z)
        x = self.knots.double()
        out = torch.zeros_like(mean)
        for k in range(K):
            lo, hi = max(0, k - half_window), min(K, k + half_window + 1)
            dx = x[lo:hi] - x[lo:hi].mean()
            out[k] = (dx[:, None] * (mean[lo:hi] - mean[lo:hi].mean(dim=0))).sum(dim=0) \
                / (dx * dx).sum()
        return out.to(self.hit_slope.dtype)

    def _position(self, energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pos, lo) of ``energy`` (B,) GeV: its fractional knot index (clamped to the table)
        and the lower knot of its interval (at most K - 2)."""
        K = self.table.shape[0]
        k0 = self.knots[0]
        pos = torch.clamp((torch.log(energy) - k0) / (self.knots[1] - k0), 0.0, K - 1.0)
        return pos, torch.clamp(torch.floor(pos), max=K - 2.0)

    def _knot_rows(self, z2: torch.Tensor, energy: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) flat indices ``k M + j`` of the entries that ``z2`` draws at ``energy`` and
        (B,) their knots ``k`` (float)."""
        M = self.table.shape[1]
        u_knot, u_entry = _uniform(z2[:, 0]), _uniform(z2[:, 1])
        pos, lo = self._position(energy)
        k = lo + (u_knot < pos - lo).to(pos.dtype)
        n = self.counts[k.long()]
        j = torch.minimum(torch.floor(u_entry * n), n - 1.0)
        return (k * M + j).long(), k

    def forward(self, z2: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        return self.draw(z2, energy)[0]

    def draw(self, z2: torch.Tensor, energy: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(layer energies GeV, hits, width^2), each (B, Z), of the entries ``z2`` draws (the
        same as :meth:`forward`'s); hits and widths None without ``stats``. As the layer
        energies are the entry's fractions times ``E``, the hits follow ``E`` from the entry's
        knot ``E_k``: ``(h + 1) (E / E_k)^s - 1``, rounded, with ``s`` the library's own slope
        of ``<ln(h + 1)>`` in ln E there (:attr:`hit_slope`). Why: the knots are 9% apart in E;
        at an energy half-way between two, every shower took the hits of an event 4.5% off in
        energy, +-2.7% in count at ~E^0.6, where the MC's own scatter of the count at fixed
        energy is 2-6%."""
        K, M, Z = self.table.shape
        rows, k = self._knot_rows(z2, energy)
        gev = self.table.reshape(K * M, Z)[rows] * energy.reshape(-1, 1)
        if not self.stats:
            return gev, None, None
        hits = self.hits.reshape(K * M, Z)[rows].to(gev.dtype)
        offset = (torch.log(energy) - self.knots[k.long()]).reshape(-1, 1)          # (B, 1)
        scaled = (hits + 1.0) * torch.exp(offset * self.hit_slope[k.long()]) - 1.0
        hits = torch.clamp(torch.round(scaled), min=0.0)
        return gev, hits, self.width2.reshape(K * M, Z)[rows].to(gev.dtype)

    def log_mean(self, energy: torch.Tensor, threshold: float) -> torch.Tensor:
        """(B, Z): the library's mean of ``ln(E_l + threshold)`` at ``energy`` (B,) GeV, linear
        in ``ln E`` between the knots (the filled entries of each knot). Only buffers enter, so
        the per-knot table is a constant: in an ONNX export it is written as one (K, Z)
        constant (the exporter does not fold it, and the graph kept the whole library a second
        time to compute it)."""
        M = self.table.shape[1]
        filled = (torch.arange(M, device=self.table.device)[None, :] < self.counts[:, None])
        logs = torch.log(self.table * torch.exp(self.knots)[:, None, None] + threshold)
        per_knot = (logs * filled[:, :, None]).sum(dim=1) / self.counts[:, None]      # (K, Z)
        if torch.onnx.is_in_onnx_export():  # a constant of the graph, not a computation
            per_knot = torch.tensor(per_knot.detach().cpu().numpy(), device=per_knot.device)
        pos, lo = self._position(energy)
        w = (pos - lo)[:, None]
        return per_knot[lo.long()] * (1.0 - w) + per_knot[lo.long() + 1] * w


def layer_shift(layer_sum: Callable[[torch.Tensor], torch.Tensor], target_gev: torch.Tensor,
                threshold: float, iterations: int = 3,
                sum_at_zero: torch.Tensor | None = None) -> torch.Tensor:
    """The per-layer log shift ``s`` (B, Z) with ``layer_sum(s) = target_gev``, by ``iterations``
    fixed-point passes ``s += ln(target + t) - ln(layer_sum(s) + t)`` from ``s = 0`` (``t`` the
    threshold, one just-visible cell, keeps empty layers finite; each step clamped to +-8).
    ``layer_sum(s)`` gives the visible energy per layer (B, Z) after the shift ``s``;
    ``sum_at_zero``, when the caller has it cheaper, is ``layer_sum(0)`` (the first pass)."""
    log_target = torch.log(target_gev + threshold)

    def step(total: torch.Tensor) -> torch.Tensor:
        return torch.clamp(log_target - torch.log(total + threshold), -8.0, 8.0)

    shift = step(layer_sum(torch.zeros_like(target_gev)) if sum_at_zero is None else sum_at_zero)
    for _ in range(iterations - 1):
        shift = shift + step(layer_sum(shift))
    return shift


def rescale_layers(u: torch.Tensor, target_gev: torch.Tensor, threshold: float,
                   iterations: int = 3) -> torch.Tensor:
    """Shift the log output ``u`` (B, X, Y, Z) layer by layer so that the cells above threshold
    sum to ``target_gev`` (B, Z) (:func:`layer_shift`), three passes (a shift moves cells across
    the threshold; the later passes correct that, to ~0.1% on a trained model). Differentiable in
    ``u``; the per-layer scale of ``u`` itself then carries no gradient (it is normalised away)."""
    cells = threshold * torch.exp(torch.clamp(u, max=30.0))     # one exp: e^(u+s) = e^u e^s

    def layer_sum(shift: torch.Tensor) -> torch.Tensor:
        fired = torch.where(u + shift[:, None, None, :] > 0, cells, torch.zeros_like(cells))
        return fired.sum(dim=(1, 2)) * torch.exp(shift)

    return u + layer_shift(layer_sum, target_gev, threshold, iterations)[:, None, None, :]


def build_library(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                  threshold: float, knots: int = LIBRARY_KNOTS,
                  entries: int = LIBRARY_ENTRIES, min_entries: int = 32, chunk: int = 1000
                  ) -> dict[str, np.ndarray]:
    """The library of an MC file (or of the events of several, pooled): ``knots`` energies
    equally spaced in ln E over the events' energy range; per knot up to ``entries`` of the
    events nearest to it in ln E (at least the ``min_entries`` nearest), as their layer energies
    above ``threshold`` over their own primary energy. A file simulated at exactly those
    energies (``caloforge simulate --energies``) gives each knot its own events. Returns
    ``table``, ``counts``, ``knots`` (float32)."""
    from caloforge.data import open_showers

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    names = ", ".join(map(str, paths))
    layer_e, ens, hits, widths = [], [], [], []
    grid0: tuple[int, ...] | None = None
    for one in paths:
        with open_showers(one) as f:
            grid0 = tuple(f.grid) if grid0 is None else grid0
            if tuple(f.grid) != grid0:
                raise UserError(f"{one}: grid {tuple(f.grid)} differs from the other library "
                                f"files' {grid0}")
            for img, e in f.iter_chunks(chunk, 0, f.n_events):
                img = np.where(img >= threshold, img, 0.0)
                layer_e.append(img.sum(axis=(1, 2), dtype=np.float64))
                hits.append(np.count_nonzero(img, axis=(1, 2)).astype(np.float32))
                widths.append(radial_width2(torch.from_numpy(img.astype(np.float64))).numpy())
                ens.append(np.asarray(e, dtype=np.float64))
    if not ens:
        raise UserError(f"{names}: no events for the layer-energy library")
    lay, hit, width2 = np.concatenate(layer_e), np.concatenate(hits), np.concatenate(widths)
    e = np.concatenate(ens)
    if len(e) < 4 or e.max() <= e.min():
        raise UserError(f"{names}: {len(e)} events at {len(np.unique(e))} energies are too few "
                        "for a layer-energy library (at least 4 events at 2 energies)")
    knots = min(knots, len(e) // 2)  # a small file: fewer knots
    frac = lay / e[:, None]
    ell = np.log(e)
    grid = np.linspace(ell.min(), ell.max(), knots)
    nearest_knot = np.abs(ell[:, None] - grid[None, :]).argmin(axis=1)
    table = np.zeros((knots, entries, lay.shape[1]), dtype=np.float32)
    counts = np.zeros(knots, dtype=np.float32)
    hit_table, width_table = np.zeros_like(table), np.zeros_like(table)
    for k, g in enumerate(grid):
        own = np.flatnonzero(nearest_knot == k)[:entries]
        if len(own) < min(min_entries, entries):  # too few of its own: the nearest in ln E
            own = np.sort(np.argsort(np.abs(ell - g), kind="stable")[:min(min_entries, entries)])
        counts[k] = len(own)
        rows = np.resize(own, entries)
        table[k], hit_table[k], width_table[k] = frac[rows], hit[rows], width2[rows]
    return {"table": table, "counts": counts, "knots": grid.astype(np.float32),
            "hits": hit_table, "width2": width_table}


def sampler_from(library: dict[str, np.ndarray], stats: bool = True) -> LayerEnergySampler:
    """A :class:`LayerEnergySampler` holding ``library`` (:func:`build_library`'s output), with
    its hits and widths per entry when ``stats`` (and the library has them)."""
    knots, entries, layers = library["table"].shape
    sampler = LayerEnergySampler(knots, entries, layers,
                                 stats=stats and "hits" in library and "width2" in library)
    sampler.fill_library(library)
    return sampler


__all__ = ["LIBRARY_ENTRIES", "LIBRARY_KNOTS", "SAMPLER_LATENT", "LayerEnergySampler",
           "build_library", "layer_shift", "rescale_layers", "sampler_from"]
