"""One-pass, streaming summary of a shower file (used by ``caloforge info`` and ``simulate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.data.reader import open_showers


def summarize(path: str | os.PathLike[str], chunk_size: int = 1000) -> dict[str, Any]:
    """Summarise a 3DGAN or CaloChallenge file, reading ``chunk_size`` events at a time.

    Returns a dict: ``path``, ``size_bytes``, ``layout``, ``n_events``, ``grid``,
    ``energy_min/max/mean`` (GeV), ``visible_fraction_mean`` and ``visible_fraction_std``
    (event E_vis/E), ``visible_mean`` (GeV), ``empty_events``, ``attrs`` (file attributes) and,
    when stored, ``seed``, ``generator``, ``caloforge_version``, ``detector`` (name).
    Raises :class:`~caloforge.errors.UserError` for a missing, corrupt or inconsistent file
    (including NaN/negative cells or energies).
    """
    p = Path(path)
    n = 0
    e_sum = 0.0
    e_min, e_max = np.inf, -np.inf
    f_sum = f_sq = vis_sum = 0.0
    empty = 0
    with open_showers(p) as f:
        layout, grid, attrs = f.layout, f.grid, dict(f.attrs)
        for images, energies in f.iter_chunks(chunk_size):
            vis = images.reshape(images.shape[0], -1).sum(axis=1, dtype=np.float64)
            frac = vis / energies
            n += energies.size
            e_sum += float(energies.sum())
            e_min, e_max = min(e_min, float(energies.min())), max(e_max, float(energies.max()))
            f_sum += float(frac.sum())
            f_sq += float((frac * frac).sum())
            vis_sum += float(vis.sum())
            empty += int((vis == 0).sum())
    mean_f = f_sum / n
    det = attrs.get("detector")
    out: dict[str, Any] = {
        "path": str(p), "size_bytes": p.stat().st_size, "layout": layout, "n_events": n,
        "grid": list(grid), "energy_min": e_min, "energy_max": e_max, "energy_mean": e_sum / n,
        "visible_mean": vis_sum / n, "visible_fraction_mean": mean_f,
        "visible_fraction_std": float(np.sqrt(max(f_sq / n - mean_f * mean_f, 0.0))),
        "empty_events": empty, "attrs": attrs,
        "seed": attrs.get("seed"), "generator": attrs.get("generator"),
        "caloforge_version": attrs.get("caloforge_version"),
        "detector": det.get("name") if isinstance(det, dict) else det,
    }
    return out


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable multi-line rendering of :func:`summarize`'s dict."""
    mb = s["size_bytes"] / 1e6
    lines = [
        f"{s['path']}: {s['n_events']} events, layout {s['layout']}, grid "
        f"{'x'.join(str(g) for g in s['grid'])} (layer axis last), {mb:.2f} MB",
        f"  primary energy   {s['energy_min']:.4g} - {s['energy_max']:.4g} GeV "
        f"(mean {s['energy_mean']:.4g} GeV)",
        f"  visible energy   mean {s['visible_mean']:.4g} GeV; E_vis/E = "
        f"{s['visible_fraction_mean']:.5f} +- {s['visible_fraction_std']:.5f} (sampling fraction)"
        + (f"; {s['empty_events']} empty events" if s["empty_events"] else ""),
    ]
    prov = [f"{k} {s[k]}" for k in ("generator", "seed", "caloforge_version", "detector")
            if s.get(k) is not None]
    if prov:
        lines.append("  provenance       " + ", ".join(prov))
    det = s["attrs"].get("detector")
    if isinstance(det, dict) and isinstance(det.get("computed"), dict):
        c = det["computed"]
        lines.append(
            f"  detector         depth {c.get('depth_X0')} X0 ({c.get('depth_mm')} mm), "
            f"X0_eff {c.get('X0_eff_mm')} mm, R_M {c.get('R_M_mm')} mm, E_c {c.get('E_c_MeV')} MeV, "
            f"front sampling fraction {c.get('sampling_fraction')}"
        )
    shown = {"detector", "generator", "seed", "caloforge_version"}
    other = {k: v for k, v in s["attrs"].items() if k not in shown}
    if other:
        lines.append("  attributes       " + "; ".join(f"{k}={_short(v)}" for k, v in sorted(other.items())))
    return "\n".join(lines)


def _short(v: Any, limit: int = 80) -> str:
    text = str(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
