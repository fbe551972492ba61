"""Validation plots (matplotlib Agg, mplhep HEP style without an experiment label).

Every plot shows the same samples in the same colours: reference black, candidate red, floor
(second reference sample) blue dashed. Each function takes :class:`FeatureTable` objects (and
histograms) keyed by sample label and writes one PNG atomically; it returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from caloforge.atomic import atomic_path
from caloforge.physics.observables import FeatureTable, LogHistogram

#: Sample label -> matplotlib style, shared by every plot.
STYLES: dict[str, dict] = {
    "reference": {"color": "black", "linestyle": "-", "marker": "o"},
    "candidate": {"color": "#e42536", "linestyle": "-", "marker": "s"},
    "floor": {"color": "#5790fc", "linestyle": "--", "marker": "^"},
}


def _style(label: str) -> dict:
    return STYLES.get(label, {"color": "#964a8b", "linestyle": ":", "marker": "v"})


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    return plt, mplhep


def _save(fig, path: str | os.PathLike[str]) -> Path:
    plt, _ = _plt()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return Path(path)


def _with_style(func):
    def wrapper(*args, **kwargs):
        plt, hep = _plt()
        with plt.style.context(hep.style.CMS), plt.rc_context({"font.size": 14}):
            return func(*args, **kwargs)
    wrapper.__doc__ = func.__doc__
    wrapper.__name__ = func.__name__
    return wrapper


def _mean_sem(table: FeatureTable, col: str) -> tuple[np.ndarray, np.ndarray]:
    v = table[col].astype(np.float64)
    n = max(len(v), 1)
    return v.mean(axis=0), v.std(axis=0) / np.sqrt(n)


def _profile_panel(fig, gs_top, gs_bot, tables: Mapping[str, FeatureTable], col: str,
                   xlabel: str, ylabel: str, log: bool) -> None:
    ax = fig.add_subplot(gs_top)
    rax = fig.add_subplot(gs_bot, sharex=ax)
    ref_mean = None
    for label, t in tables.items():
        m, e = _mean_sem(t, col)
        x = np.arange(m.size)
        st = _style(label)
        ax.errorbar(x, m, yerr=e, label=f"{label} ({len(t)})", color=st["color"],
                    linestyle=st["linestyle"], marker=st["marker"], markersize=4, drawstyle="steps-mid")
        if ref_mean is None:
            ref_mean, ref_err = m, e
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(ref_mean > 0, m / ref_mean, np.nan)
            re = np.where(ref_mean > 0, np.hypot(e / np.where(m > 0, m, 1) * r,
                                                 ref_err / ref_mean * r), np.nan)
        rax.errorbar(x, r, yerr=re, color=st["color"], linestyle="none", marker=st["marker"],
                     markersize=4)
    rax.axhline(1.0, color="black", linewidth=1)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("ratio to ref.", fontsize=12)
    rax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=11)
    ax.tick_params(labelbottom=False)


@_with_style
def plot_longitudinal(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str]) -> Path:
    """Mean energy per layer (longitudinal profile) with a ratio panel."""
    plt, _ = _plt()
    fig = plt.figure(figsize=(8, 7))
    gs = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.05, left=0.14, right=0.97,
                          top=0.97, bottom=0.1)
    _profile_panel(fig, gs[0], gs[1], tables, "profile_z", "layer (z)", "mean energy per layer [GeV]",
                   log=False)
    return _save(fig, path)


@_with_style
def plot_transverse(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str]) -> Path:
    """Mean transverse profiles along x and y (log scale) with ratio panels."""
    plt, _ = _plt()
    fig = plt.figure(figsize=(14, 7))
    gs = fig.add_gridspec(2, 2, height_ratios=(3, 1), hspace=0.05, wspace=0.25,
                          left=0.08, right=0.98, top=0.97, bottom=0.1)
    _profile_panel(fig, gs[0, 0], gs[1, 0], tables, "profile_x", "cell x", "mean energy [GeV]", log=True)
    _profile_panel(fig, gs[0, 1], gs[1, 1], tables, "profile_y", "cell y", "mean energy [GeV]", log=True)
    return _save(fig, path)


@_with_style
def plot_response(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str], n_bins: int = 12) -> Path:
    """E_vis / E_primary versus E_primary: mean (markers) and RMS (error bars) per energy bin."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(8, 6))
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.13, top=0.97)
    ref = next(iter(tables.values()))
    lo, hi = float(ref["e_primary"].min()), float(ref["e_primary"].max())
    edges = np.linspace(lo, hi * (1 + 1e-9), n_bins + 1) if hi > lo else np.array([lo * 0.95, hi * 1.05])
    centres = 0.5 * (edges[1:] + edges[:-1])
    for k, (label, t) in enumerate(tables.items()):
        idx = np.clip(np.searchsorted(edges, t["e_primary"], side="right") - 1, 0, len(centres) - 1)
        cnt = np.bincount(idx, minlength=len(centres))
        s1 = np.bincount(idx, t["e_ratio"], minlength=len(centres))
        s2 = np.bincount(idx, t["e_ratio"] ** 2, minlength=len(centres))
        ok = cnt > 0
        m = s1[ok] / cnt[ok]
        sd = np.sqrt(np.maximum(s2[ok] / cnt[ok] - m * m, 0))
        st = _style(label)
        shift = (k - 1) * 0.01 * (edges[-1] - edges[0])
        ax.errorbar(centres[ok] + shift, m, yerr=sd, label=label, color=st["color"],
                    marker=st["marker"], linestyle="none", markersize=5, capsize=2)
    ax.set_xlabel(r"$E_{primary}$ [GeV]")
    ax.set_ylabel(r"$E_{vis} / E_{primary}$")
    ax.legend(fontsize=11)
    return _save(fig, path)


def _hist_edges(values: list[np.ndarray], n_bins: int = 40) -> np.ndarray:
    allv = np.concatenate(values)
    lo, hi = np.quantile(allv, [0.001, 0.999])
    if np.all(allv == np.round(allv)) and hi - lo < 200:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


def _hist_panel(ax, tables: Mapping[str, FeatureTable], col: str, xlabel: str, log: bool = False) -> None:
    edges = _hist_edges([t[col] for t in tables.values()])
    for label, t in tables.items():
        h, _ = np.histogram(np.clip(t[col], edges[0], edges[-1]), bins=edges)
        h = h / max(h.sum(), 1)
        st = _style(label)
        ax.stairs(h, edges, label=label, color=st["color"], linestyle=st["linestyle"], linewidth=1.5)
    ax.set_xlabel(xlabel, fontsize=13)
    ax.set_ylabel("fraction of events", fontsize=13)
    if log:
        ax.set_yscale("log")


@_with_style
def plot_moments(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str]) -> Path:
    """Distributions of the first and second moments along x, y, z (cell-index units)."""
    plt, _ = _plt()
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for j, a in enumerate("xyz"):
        _hist_panel(axes[0, j], tables, f"m1_{a}", f"centroid $m_1$ along {a} [cell]")
        _hist_panel(axes[1, j], tables, f"m2_{a}", f"2nd moment $m_2$ along {a} [cell$^2$]")
    axes[0, 0].legend(fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.08, top=0.98, wspace=0.25, hspace=0.25)
    return _save(fig, path)


@_with_style
def plot_hits(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str]) -> Path:
    """Hit multiplicity (cells above the hit threshold) and E_vis / E_primary distributions."""
    plt, _ = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    thr = next(iter(tables.values())).hit_threshold
    _hist_panel(axes[0], tables, "n_hits", f"cells above {thr * 1e3:g} MeV")
    _hist_panel(axes[1], tables, "e_ratio", r"$E_{vis} / E_{primary}$")
    axes[0].legend(fontsize=11)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.97, wspace=0.25)
    return _save(fig, path)


@_with_style
def plot_spectrum(spectra: Mapping[str, LogHistogram], path: str | os.PathLike[str]) -> Path:
    """Cell-energy spectrum (non-empty cells), log-log, normalised to unit area."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(8, 6))
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.13, top=0.97)
    for label, h in spectra.items():
        c = h.counts / max(h.counts.sum(), 1)
        st = _style(label)
        ax.stairs(c, h.edges, label=label, color=st["color"], linestyle=st["linestyle"], linewidth=1.5)
    ax.set_xscale("log")
    if any(h.counts.any() for h in spectra.values()):
        ax.set_yscale("log")
    ax.set_xlabel("cell energy [GeV]")
    ax.set_ylabel("fraction of non-empty cells")
    ax.legend(fontsize=11)
    return _save(fig, path)


_SCAN_PANELS = (("response", r"$\langle E_{cal} \rangle / E_{primary}$", r"$\Delta$ rel."),
                ("resolution", r"$\sigma(E_{cal}) / \langle E_{cal} \rangle$", r"$\Delta$ rel."),
                ("hits", "hits per shower", r"$\Delta$ rel."),
                ("shower_max", "shower-max layer", r"$\Delta$ [layers]"))


@_with_style
def plot_energy_scan(scan: Mapping, path: str | os.PathLike[str]) -> Path:
    """Per primary-energy bin: calibrated response, resolution, hits, shower maximum (top) and
    each sample's difference to the reference with the issue-15 target band (bottom)."""
    plt, _ = _plt()
    fig = plt.figure(figsize=(20, 8))
    gs = fig.add_gridspec(2, 4, height_ratios=(2, 1), hspace=0.05, wspace=0.3, left=0.05,
                          right=0.99, top=0.97, bottom=0.1)
    centres = np.asarray(scan["centres"], dtype=np.float64)
    for j, (q, ylabel, dlabel) in enumerate(_SCAN_PANELS):
        ax = fig.add_subplot(gs[0, j])
        dax = fig.add_subplot(gs[1, j], sharex=ax)
        for k, (label, rows) in enumerate(scan["bins"].items()):
            st = _style(label)
            shift = 1.0 + 0.02 * (k - 1)
            ok = [i for i, r in enumerate(rows) if r.get(q) is not None and r["n"] >= scan["min_events"]]
            if ok:
                ax.errorbar(centres[ok] * shift, [rows[i][q] for i in ok],
                            yerr=[rows[i][f"{q}_err"] for i in ok], label=label, color=st["color"],
                            marker=st["marker"], linestyle="none", markersize=5, capsize=2)
            d = [r for r in scan["diffs"].get(label, []) if f"d_{q}" in r]
            if d:
                dax.errorbar(np.array([r["energy"] for r in d]) * shift, [r[f"d_{q}"] for r in d],
                             yerr=[r[f"d_{q}_err"] for r in d], color=st["color"],
                             marker=st["marker"], linestyle="none", markersize=5, capsize=2)
        t = scan["targets"][q]
        dax.axhspan(-t, t, color="0.85", zorder=0)
        dax.axhline(0.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_ylabel(ylabel, fontsize=13)
        dax.set_ylabel(dlabel + " to ref.", fontsize=12)
        dax.set_xlabel(r"$E_{primary}$ [GeV]", fontsize=13)
        ax.tick_params(labelbottom=False)
        if j == 0:
            ax.legend(fontsize=11)
    return _save(fig, path)


@_with_style
def plot_correlations(tables: Mapping[str, FeatureTable], path: str | os.PathLike[str]) -> Path:
    """How the scalar features move together (:mod:`caloforge.physics.correlations`): per
    energy band, the candidate's rank correlations minus the reference's below the diagonal and
    the floor's minus the reference's above it (the noise to read them against)."""
    from caloforge.physics.correlations import JOINT_FEATURES, band_correlations

    plt, _ = _plt()
    ref, cand = tables["reference"], tables["candidate"]
    bands = band_correlations(ref, cand)
    floor = band_correlations(ref, tables["floor"]) if "floor" in tables else []
    if len(floor) != len(bands):
        floor = []
    n = max(len(bands), 1)
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n + 1.5, 6.5), squeeze=False)
    k = len(JOINT_FEATURES)
    image = None
    for b, ax in enumerate(axes[0]):
        if b >= len(bands):
            ax.text(0.5, 0.5, "too few events per band", ha="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        diff = np.full((k, k), np.nan)
        low = np.tril_indices(k, -1)
        diff[low] = (bands[b]["candidate"] - bands[b]["reference"])[low]
        if floor:
            up = np.triu_indices(k, 1)
            diff[up] = (floor[b]["candidate"] - floor[b]["reference"])[up]
        image = ax.imshow(diff, cmap="RdBu_r", vmin=-0.4, vmax=0.4)
        for i, j in zip(*np.nonzero(np.abs(np.nan_to_num(diff)) >= 0.1), strict=True):
            ax.text(j, i, f"{diff[i, j]:+.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(k), JOINT_FEATURES, rotation=60, fontsize=10)
        ax.set_yticks(range(k), JOINT_FEATURES, fontsize=10)
        lo, hi = bands[b]["energy_gev"]
        ax.set_title(f"{lo:.3g}-{hi:.3g} GeV", fontsize=13)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02,
                     label=r"$\rho_{cand} - \rho_{ref}$ (below), $\rho_{floor} - \rho_{ref}$ (above)")
    return _save(fig, path)


def plot_all(tables: Mapping[str, FeatureTable], spectra: Mapping[str, LogHistogram],
             output_dir: str | os.PathLike[str], scan: Mapping | None = None) -> dict[str, Path]:
    """Write every validation plot into ``output_dir``; returns ``{name: path}``."""
    out = Path(output_dir)
    extra = {} if scan is None else {"energy_scan": plot_energy_scan(scan, out / "energy_scan.png")}
    return {
        "longitudinal": plot_longitudinal(tables, out / "longitudinal_profile.png"),
        "transverse": plot_transverse(tables, out / "transverse_profiles.png"),
        "response": plot_response(tables, out / "response.png"),
        "moments": plot_moments(tables, out / "moments.png"),
        "spectrum": plot_spectrum(spectra, out / "cell_spectrum.png"),
        "hits": plot_hits(tables, out / "hit_multiplicity.png"),
        "correlations": plot_correlations(tables, out / "feature_correlations.png"),
        **extra,
    }
