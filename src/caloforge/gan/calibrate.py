"""Per-cell calibration of a sparse phase generator's prior against an MC file.

What it fixes: the mean image. The 3DGAN metric's profile term compares *mean* profiles cell
index by cell index, and the sparsity and hits per layer are sums of per-cell hit probabilities;
a generator whose per-cell hit probability and mean energy when hit are off by a few percent
(the network's convolutions leave sub-pixel patterns: the phase6 model's mean x profile at 100
GeV alternated 0.41 / 1.50 of the MC's at x = 9 / 10) fails them however good its fluctuations
are. The sparse head's prior holds exactly those two numbers per cell and energy knot
(:mod:`caloforge.gan.sparse`: occupancy logit ``probit(p_hit)``, log energy ``ln(mean when
hit)``), so the mismatch can be measured and removed directly, by fixed-point steps

    logit_k  += probit(p_MC) - probit(p_model)
    energy_k += <ln E>_MC - <ln E>_model        (when hit; match="both", the default)
    noise_c  *= sqrt(x_MC / x_model),  x = ln(mean E) - <ln E>   (so that the mean matches too)
    skew_c   += (g_MC - g_model) / 6,  g the skewness of ln E when hit (match="shape" only)

and, with ``match="layer"`` (a generator with the layer-energy coupling), on the cell's share of
its layer's energy ``y = ln(E_c / E_l)`` against the layer's energy excess ``x`` instead of on ln
E itself: the strength per knot ``noise_val_knots`` by the ratio of the spreads of ``y`` about
its line in ``x``, the skew by the skewness of ``y``, and the coupling ``value_layer`` by the
difference of the slopes of ``y`` on ``x`` (ring-pooled about the shower axis;
:mod:`caloforge.gan.cell_shares`), and the occupancy couplings ``occ_layer`` / ``occ_global`` from
the hits per layer (:mod:`caloforge.gan.hit_counts`) -- see :func:`calibrate_prior`

per cell and prior knot ``k``, each statistic averaged over the events with the prior's
interpolation weights in ln E (:meth:`PhaseGenerator._hat`), the steps clipped to +-1 (logit)
and +-3 (energy), the
energy step taken only where both samples have hits. The model's hit probability is the
smooth :meth:`PhaseGenerator.fire_probability` (a cell that fires once in 10^4 showers shows
as 0 hits in a sample of a few thousand), the MC's its hit frequency (a cell it never hits is
driven towards probit(1e-5)). Each pass generates the MC file's energies
with fixed noise (same seed, same showers) and re-measures; the network's weights are untouched.
The MC file should not be the sample the generator is validated against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from caloforge.errors import UserError
from caloforge.gan.cell_shares import MIN_NOISE_HITS as _MIN_NOISE_HITS
from caloforge.gan.cell_shares import MIN_SKEW_HITS as _MIN_SKEW_HITS
from caloforge.gan.cell_shares import CellShares, ring_groups, share_steps, skew_step
from caloforge.gan.depth import DepthShares, depth_means, depth_steps, layer_depth
from caloforge.gan.halo import LogSums, WouldBe, halo_steps, would_be_log
from caloforge.gan.hit_counts import LayerHits, occupancy_steps
from caloforge.gan.model import ENERGY_SCALE_GEV
from caloforge.gan.phase import PhaseGenerator

_P_CLIP = 1e-5   # a cell the MC never hits is driven towards probit(1e-5) = -4.3
_MIN_HITS = 3.0
_VALUE_STEP = 3.0   # largest energy step per pass (a factor e^3); the logit step is +-1
#: |noise strength| <= 1.5x the MC's spread of ln E at that cell (modes log and shape): where
#: the softplus holds a cell at the threshold, a larger strength barely widens ln E, so the
#: spread step alone grew one halo cell's strength 10x (1.5 per pass) and its mean energy 900x
_NOISE_CAP = 1.5
#: Calibration modes of :func:`calibrate_prior`.
MATCHES = ("mean", "log", "both", "shape", "layer", "hits", "halo", "depth", "auto")


def check_settings(match: str, passes: object,
                   names: tuple[str, str] = ("match", "passes")) -> None:
    """One-line :class:`UserError` for a calibration mode not in :data:`MATCHES` or a pass
    count that is not an integer >= 1, naming them as ``names`` (the caller's parameter or
    flag names)."""
    if match not in MATCHES:
        raise UserError(f"{names[0]} {match!r}: choose {', '.join(MATCHES)}")
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise UserError(f"{names[1]} {passes!r}: expected an integer >= 1")


class _Marginals:
    """Hat-weighted sums per prior knot: weight, hits, expected hits and energy per cell."""

    def __init__(self, knots: int, cells: int) -> None:
        self.weight = np.zeros(knots)
        self.hits = np.zeros((knots, cells))
        self.expected = np.zeros((knots, cells))
        self.energy = np.zeros((knots, cells))
        self.log1 = np.zeros((knots, cells))
        self.log2 = np.zeros((knots, cells))
        self.log3 = np.zeros((knots, cells))

    def add(self, hat: np.ndarray, images: np.ndarray, fire: np.ndarray | None = None) -> None:
        """``fire``: per cell the probability that it fires (None: the 0/1 hits of ``images``)."""
        flat = images.reshape(len(images), -1).astype(np.float64)
        self.weight += hat.sum(axis=0)
        hits = hat.T @ (flat > 0)
        self.hits += hits
        self.expected += hits if fire is None else \
            hat.T @ fire.reshape(len(fire), -1).astype(np.float64)
        self.energy += hat.T @ flat
        logs = np.log(np.where(flat > 0, flat, 1.0))
        self.log1 += hat.T @ logs
        self.log2 += hat.T @ logs ** 2
        self.log3 += hat.T @ logs ** 3

    def p_hit(self) -> np.ndarray:
        w = np.maximum(self.weight, 1e-12)[:, None]
        return np.clip(self.expected / w, _P_CLIP, 1 - _P_CLIP)

    def mean_when_hit(self) -> np.ndarray:
        return self.energy / np.maximum(self.hits, 1e-12)

    def log_mean(self) -> np.ndarray:
        return self.log1 / np.maximum(self.hits, 1e-12)

    def _pooled(self, per_knot: np.ndarray) -> np.ndarray:
        """Per cell: a per-knot statistic (knots, cells) averaged over the knots, hits-weighted."""
        return (per_knot * self.hits).sum(axis=0) / np.maximum(self.hits.sum(axis=0), 1e-12)

    def _log_variance(self) -> np.ndarray:
        """(knots, cells): the variance of ln E when hit about each knot's mean."""
        return np.maximum(self.log2 / np.maximum(self.hits, 1e-12) - self.log_mean() ** 2, 0.0)

    def log_excess(self) -> np.ndarray:
        """Per cell: ln(mean E when hit) - mean ln E when hit, pooled over the knots (hits-
        weighted): sigma^2 / 2 for a log-normal cell energy."""
        return self._pooled(np.log(np.maximum(self.mean_when_hit(), 1e-30)) - self.log_mean())

    def log_spread(self) -> np.ndarray:
        """Per cell: the spread of ln E when hit, pooled over the knots (hits-weighted)."""
        return np.sqrt(self._pooled(self._log_variance()))


    def log_skew(self) -> np.ndarray:
        """Per cell: the skewness of ln E when hit, third and second central moments (about
        each knot's mean) pooled over the knots (hits-weighted)."""
        h = np.maximum(self.hits, 1e-12)
        mu, e2 = self.log_mean(), self.log2 / h
        m3 = self.log3 / h - 3.0 * mu * e2 + 2.0 * mu ** 3
        return self._pooled(m3) / np.maximum(self._pooled(self._log_variance()), 1e-12) ** 1.5


def _hit_in_both(data: _Marginals, model: _Marginals, n: float) -> np.ndarray:
    """Per cell: at least ``n`` hits (summed over the knots) in the MC and in the model."""
    return (data.hits.sum(axis=0) >= n) & (model.hits.sum(axis=0) >= n)


def _log_sums(m: _Marginals, would: WouldBe | None = None) -> LogSums:
    if would is None:
        return LogSums(m.hits, m.log1, m.log2)
    return LogSums(m.hits, m.log1, m.log2, would.weight, would.log)


def _hat(gen: PhaseGenerator, energies: np.ndarray) -> np.ndarray:
    ell = torch.from_numpy(np.log(energies / ENERGY_SCALE_GEV)).float().reshape(-1, 1)
    return gen._hat(ell).double().numpy()


def resolve_match(match: str, gen: torch.nn.Module) -> str:
    """``"auto"``: ``"layer"`` for a generator with the layer-energy coupling, else
    ``"shape"``; any other mode as it is."""
    if match != "auto":
        return match
    return "layer" if getattr(gen, "layer_occupancy", False) else "shape"


def _excess(gen: PhaseGenerator, images: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(B, Z): ``ln(E_l + t) - <ln(E_l + t)>_E`` of showers (B, X, Y, Z) GeV at ``energies``,
    the layer-energy excess the generator's couplings see (``PhaseGenerator._sparse_inputs``)."""
    assert gen.layers is not None
    thr = float(gen.cell_threshold_gev)
    layer = torch.from_numpy(images.sum(axis=(1, 2), dtype=np.float64)).float()
    mean = gen.layers.log_mean(torch.from_numpy(energies).float(), thr)
    return (torch.log(layer + thr) - mean).double().numpy()


def _depth_excess(gen: PhaseGenerator, images: np.ndarray, hat: np.ndarray) -> np.ndarray:
    """(B,): the depth excess of showers (B, X, Y, Z) GeV as ``PhaseGenerator._depth_excess``
    computes it from their layer energies (``hat``: the showers' prior-knot weights)."""
    depth = layer_depth(images.sum(axis=(1, 2), dtype=np.float64))
    return depth - hat @ gen.depth_mean.double().numpy()


def _set_depth_mean(gen: PhaseGenerator, paths: list[str | os.PathLike[str]],
                    max_events: int | None) -> None:
    """``gen.depth_mean`` from the MC files: the depth's trend in ln E at the knots
    (:func:`caloforge.gan.depth.depth_means`; a pass over the layer energies before the
    statistics, which need the depth *excess*). Set only once every file has been read."""
    from caloforge.data import open_showers

    hats, depths = [], []
    for path in paths:
        with open_showers(path) as f:
            if tuple(f.grid) != (25, 25, 25):
                raise UserError(f"{path}: grid {tuple(f.grid)}; the generator needs (25, 25, 25)")
            stop = f.n_events if max_events is None else min(max_events, f.n_events)
            for img, e in f.iter_chunks(1000, 0, stop):
                img = np.where(img >= float(gen.cell_threshold_gev), img, 0.0)
                hats.append(_hat(gen, np.asarray(e, dtype=np.float64)))
                depths.append(layer_depth(img.sum(axis=(1, 2), dtype=np.float64)))
    if hats:
        mean = depth_means(np.concatenate(hats), np.concatenate(depths))
        gen.depth_mean.copy_(torch.from_numpy(mean).float())


def _probit(p: np.ndarray) -> np.ndarray:
    return torch.special.ndtri(torch.from_numpy(p)).numpy()


def _noise_step(gen: PhaseGenerator, match: str, data: _Marginals, model: _Marginals,
                s_data: np.ndarray, x_data: np.ndarray) -> None:
    """Modes ``log``, ``shape`` and ``both``: each cell's energy-noise strength scaled by the
    ratio of the spreads of ln E (``both``: of ``ln(mean) - mean ln E``, square root), from >= 30
    hits in each sample, 2/3..1.5 per pass; ``log`` / ``shape`` cap the strength at 1.5x the
    MC's spread."""
    enough = _hit_in_both(data, model, _MIN_NOISE_HITS)
    if match in ("log", "shape"):
        ratio = s_data / np.maximum(model.log_spread(), 1e-6)
    else:
        ratio = np.sqrt(np.maximum(x_data, 0.0) / np.maximum(model.log_excess(), 1e-6))
    ratio = np.where(enough, np.clip(ratio, 2.0 / 3.0, 1.5), 1.0)
    gen.noise_val.mul_(torch.from_numpy(ratio).float().reshape(gen.noise_val.shape))
    if match != "both":  # the noise alone never spreads ln E much more than the MC
        cap = torch.from_numpy(np.where(enough, _NOISE_CAP * s_data, np.inf)).float()
        strength = gen.noise_val.view(-1)  # a view: written in place
        strength.copy_(torch.sign(strength) * torch.minimum(strength.abs(), cap))


def calibrate_prior(gen: PhaseGenerator,
                    mc_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    passes: int = 3,
                    max_events: int | None = None, batch: int = 256, seed: int = 20261202,
                    match: str = "both",
                    progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Calibrate ``gen``'s sparse prior in place against the MC showers of ``mc_path`` (one
    file or several, e.g. the layer-energy library and the training data; ``max_events`` per
    file) (module doc); returns, per pass, the hat-weighted mean of the (clipped to +-1) logit
    step |probit(p_MC) - probit(p_model)| over the cells and knots with at least 3 hat-weighted
    MC hits, before that pass's step (how far the hit probabilities were off; in mode
    ``"halo"``, which does not compute the smooth fire probabilities, ``p_model`` is the
    generated showers' 0/1 hits, a noisier figure).
    ``progress(pass, value)`` is called after each pass. ``match``: ``"mean"`` steps the log
    energy by the log ratio of the mean energies when hit (the mean image); ``"log"`` by the
    difference of the mean ln E when hit (the typical cell energy), and also scales each cell's
    energy-noise strength by the ratio of the spreads of ln E (pooled over the knots);
    ``"both"`` steps as ``"log"`` and scales the noise strength so that the mean matches too
    (by the square root of the ratio of ``ln(mean) - mean ln E``, sigma^2 / 2 for a log-normal);
    ``"shape"`` steps as ``"log"`` and also each cell's skew parameter ``noise_skew`` by the
    difference of the skewnesses of ln E over 6 (the slope of
    :func:`caloforge.gan.sparse.skew_of` at 0; cells with >= 100 hits in each sample, +-0.15 per
    pass, kept in [-0.7, 0]). Modes ``"log"`` and ``"shape"`` cap ``|noise strength|`` at 1.5x
    the MC's spread of the cell's ln E (cells with >= 30 hits in each sample). ``"layer"`` (a
    generator with the layer-energy coupling) steps the prior as ``"log"`` and then, from each
    cell's share of its layer's energy, the per-knot strength ``noise_val_knots``, the skew and
    the coupling ``value_layer`` (:func:`caloforge.gan.cell_shares.share_steps`; the same cap),
    and from the hits per layer the occupancy couplings ``occ_layer``, ``occ_cross`` (since
    the sixth default: earlier ``layer`` calibrations did not step it) and ``occ_global``
    (:func:`caloforge.gan.hit_counts.occupancy_steps`); ``"hits"`` the occupancy couplings
    alone (the prior, noise and share parameters stay as they are: a calibrated model whose
    hit counts still need the cross-layer coupling, ``PhaseGenerator.occ_cross``); ``"halo"``
    the far halo's log energies and per-knot noise strengths at the knots where a cell and its
    ring lack the hits, from bands of three rings over all layers (:mod:`caloforge.gan.halo`;
    every other entry stays as it is); ``"depth"`` the prior as ``"log"`` and, from each cell's
    share fitted on its layer's energy excess *and* the shower's depth excess, ``value_layer``,
    ``value_depth`` and ``noise_val_knots`` (:mod:`caloforge.gan.depth`; sets ``depth_mean``
    from the MC first; skew and occupancy couplings stay as they are); ``"auto"``:
    ``"layer"`` where the generator has the coupling, else ``"shape"``."""
    from caloforge.data import open_showers

    check_settings(match, passes)
    if not isinstance(gen, PhaseGenerator) or not gen.sparse:
        raise UserError("calibrate_prior: the generator has no sparse head (nothing to calibrate)")
    match = resolve_match(match, gen)
    if gen.layers is not None and gen.layers.stats:
        # its drawn showers take their hits and widths from the library: the occupancy steps
        # would move couplings that no longer act, the halo's would-be energies assume one
        # scale factor per layer (the width rule raises the energies to a power)
        raise UserError("calibrate_prior: the generator's library keeps hits and widths per "
                        "entry; calibrate the generator before giving it such a library "
                        "(export the calibrated weights with --export-library)")
    if match in ("layer", "hits", "depth") and not gen.layer_occupancy:
        raise UserError(f"calibrate_prior: match {match!r} needs a generator with a "
                        "layer-energy library and the layer-occupancy coupling")
    knots, cells = gen.prior_sparse.shape[1], gen.prior_sparse.shape[2]
    data = _Marginals(knots, cells)
    shares = CellShares(knots, cells) if match == "layer" else None
    hits = LayerHits() if match in ("layer", "hits") else None
    depth = DepthShares(knots, cells) if match == "depth" else None
    groups = ring_groups(tuple(gen.noise_skew.shape[1:]))  # type: ignore[arg-type]
    paths = [mc_path] if isinstance(mc_path, (str, os.PathLike)) else list(mc_path)
    if depth is not None:
        with torch.no_grad():
            _set_depth_mean(gen, paths, max_events)
    parts = []
    for path in paths:
        with open_showers(path) as f:
            if tuple(f.grid) != (25, 25, 25):
                raise UserError(f"{path}: grid {tuple(f.grid)}; the generator needs (25, 25, 25)")
            stop = f.n_events if max_events is None else min(max_events, f.n_events)
            parts.append(np.asarray(f.energies(), dtype=np.float64)[:stop])
            for img, e in f.iter_chunks(1000, 0, stop):
                img = np.where(img >= float(gen.cell_threshold_gev), img, 0.0)
                e64 = np.asarray(e, dtype=np.float64)
                hat = _hat(gen, e64)
                data.add(hat, img)
                if hits is not None:
                    excess = _excess(gen, img, e64)
                    hits.add(hat, img, excess, np.log(e64 / ENERGY_SCALE_GEV))
                    if shares is not None:
                        shares.add(hat, img, excess)
                if depth is not None:
                    depth.add(hat, img, _excess(gen, img, e64), _depth_excess(gen, img, hat))
    energies = np.concatenate(parts) if parts else np.zeros(0)
    if len(energies) == 0:
        raise UserError(f"{', '.join(map(str, paths))}: no events to calibrate against")
    p_data, m_data, s_data = data.p_hit(), data.mean_when_hit(), data.log_spread()
    k_data = data.log_skew()
    shares_ring = shares.grouped(groups) if shares is not None else None
    depth_ring = depth.grouped(groups) if depth is not None else None
    hits_fit = hits.regressions() if hits is not None else None
    x_data = data.log_excess()
    hit_data = data.hits >= _MIN_HITS
    offsets: list[float] = []
    gen.eval()
    for step in range(passes):
        model = _Marginals(knots, cells)
        model_shares = CellShares(knots, cells) if shares is not None else None
        model_hits = LayerHits() if hits is not None else None
        model_depth = DepthShares(knots, cells) if depth is not None else None
        would = WouldBe(knots, cells) if match == "halo" else None
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for lo in range(0, len(energies), batch):
                e = energies[lo:lo + batch]
                z = torch.randn(len(e), gen.latent_dim, generator=g)
                hat = _hat(gen, e)
                if would is not None:  # "halo": every cell's would-be energy, hit or not
                    showers, wb, valid = would_be_log(gen, z, torch.from_numpy(e).float())
                    would.add(hat, wb.numpy(), valid.numpy())
                    fire = density = None
                else:
                    showers, fire, density = gen.fire_statistics(z, torch.from_numpy(e).float())
                x = showers.numpy()
                x = np.where(x >= float(gen.cell_threshold_gev), x, 0.0)
                model.add(hat, x, None if fire is None else fire.numpy())
                if model_hits is not None:
                    excess = _excess(gen, x, e)
                    assert density is not None
                    model_hits.add(hat, x, excess, np.log(e / ENERGY_SCALE_GEV), density.numpy())
                    if model_shares is not None:
                        model_shares.add(hat, x, excess)
                if model_depth is not None:
                    model_depth.add(hat, x, _excess(gen, x, e), _depth_excess(gen, x, hat))
        d_logit = np.clip(_probit(p_data) - _probit(model.p_hit()), -1.0, 1.0)
        both = hit_data & (model.hits >= _MIN_HITS)
        if match == "mean":
            d_value = (np.log(np.maximum(m_data, 1e-30))
                       - np.log(np.maximum(model.mean_when_hit(), 1e-30)))
        else:
            d_value = data.log_mean() - model.log_mean()
        d_value = np.where(both, np.clip(d_value, -_VALUE_STEP, _VALUE_STEP), 0.0)
        w = data.weight[:, None] * hit_data
        offsets.append(float((np.abs(d_logit) * w).sum() / max(w.sum(), 1e-12)))
        # the per-knot strength's cap of the layer, halo and depth steps: 1.5x the MC's spread
        cap = np.where(_hit_in_both(data, model, _MIN_NOISE_HITS), _NOISE_CAP * s_data, np.inf)
        with torch.no_grad():
            if match == "halo":  # the far halo's thin knots alone
                assert would is not None
                halo_steps(gen, _log_sums(data), _log_sums(model, would), cap)
            elif match != "hits":  # "hits": the occupancy couplings alone
                logit_step = np.where(data.weight[:, None] > 0, d_logit, 0.0)
                gen.prior_sparse[0] += torch.from_numpy(logit_step).float()
                gen.prior_sparse[1] += torch.from_numpy(d_value).float()
                if shares is not None and shares_ring is not None and model_shares is not None:
                    share_steps(gen, shares, shares_ring, model_shares, groups, cap)
                elif depth is not None and depth_ring is not None and model_depth is not None:
                    depth_steps(gen, depth, depth_ring, model_depth, groups, cap)
                elif match != "mean":
                    _noise_step(gen, match, data, model, s_data, x_data)
                if match == "shape":  # d skew / dk = 6 at k = 0 (sparse.skew_of)
                    enough = _hit_in_both(data, model, _MIN_SKEW_HITS)
                    skew_step(gen, np.where(enough, k_data - model.log_skew(), 0.0))
            if hits_fit is not None and model_hits is not None:
                occupancy_steps(gen, hits_fit, model_hits)
        if progress is not None:
            progress(step + 1, offsets[-1])
    return offsets


__all__ = ["MATCHES", "calibrate_prior", "check_settings", "resolve_match", "ring_groups"]
