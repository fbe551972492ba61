"""Hit count and lateral width of each layer from the library entry: the rest of the first factor.

The layer-energy library (:mod:`caloforge.gan.layers`) replays the layer energies of stored MC
events. Given those energies the image network still drew each layer's number of fired cells
and its lateral spread on its own, and fluctuated 1.3-1.9x too much in both (docs/gan.md, "What
the layer energies do not explain"): a classifier told its showers from the MC at AUC 0.81,
mostly on the per-layer widths and the hit counts. The same MC event that gives a library entry
its layer energies also gives, per layer, its number of cells above the threshold ``n_l`` and
its radial width ``w_l^2 = var_x + var_y`` (energy-weighted variance of the cell index about the
layer's centroid, in cell units^2). A shower drawn from that entry keeps all three, the way
CaloFlow's first flow (Krause & Shih, arXiv 2106.05285) fixes the layer energies and leaves the
rest to the second; the image network still decides *which* cells fire and how the energy is
shared among them:

* :func:`count_rule`: the ``n_l`` cells of largest occupancy logit fire in layer ``l`` (the
  logits are moved so that exactly those are positive);
* :func:`width_contrast`: the fired cells' energies are raised to a power ``a_l`` per layer
  (``x -> x^a``: ``a > 1`` moves energy into the hottest cells and narrows the layer, ``a < 1``
  widens it) with ``a_l`` from Newton's method on ``ln w^2(a) = ln w_l^2``; the layer is then
  rescaled to its energy as before (:func:`caloforge.gan.sparse.sparse_gev`).

Both run only where the library draws the shower (generation), never on the real showers'
layer energies of a training step. Only element-wise operations, reductions and a transposed
copy: nothing an INT8 graph quantizes.
"""

from __future__ import annotations

import torch

#: Halvings of :func:`count_rule`'s level (a logit range of ~30 resolved to 5e-4).
COUNT_ITERATIONS = 16
#: Newton iterations of :func:`width_contrast` (from ``a = 1``; measured on the shipped model:
#: the median |ln w^2 - ln w_l^2| after 3 is below 1e-3).
WIDTH_ITERATIONS = 3
#: Range of the contrast exponent ``a``.
CONTRAST_RANGE = (0.25, 4.0)
#: Regulariser of ``ln w^2`` (cell units^2): a layer with one fired cell has width 0.
WIDTH_FLOOR = 1e-2
#: Floor of the exponent ``a d``: below float32's normal range only at ``a d < -87``; with
#: ``d >= -16`` (a cell at the threshold under the sparse head's cap) and ``a <= 4`` it never
#: binds, so a per-layer maximum and a fixed bound as the reference give the same numbers.
_EXP_FLOOR = -80.0


def count_rule(logit: torch.Tensor, hits: torch.Tensor,
               iterations: int = COUNT_ITERATIONS) -> torch.Tensor:
    """``logit`` (B, X, Y, Z) moved per layer so that the ``hits`` (B, Z) cells of largest
    logit are > 0: a bisection of the level between the layer's smallest and largest logit,
    keeping ``count(logit > hi) <= n < count(logit > lo)`` (for ``n`` = all cells the level
    only falls, to ``lo``), ``iterations`` halvings; the logits minus ``hi`` are returned. Exact
    unless the ``n``-th and ``n+1``-th largest logits of a layer are closer than its logit
    range / 2^iterations (then a cell fewer fires). Why not a
    sort: in the OpenVINO graph a TopK of 157 of 625 per layer took 40% of an INT8 batch's
    time; the halvings are a comparison and a sum each. Tied logits at the ``n``-th place fire
    none of the tied cells: the caller keeps a layer with energy from ending empty
    (``PhaseGenerator._layer_rule``). No gradient (inference).

    The halvings run on a layer-major copy (:func:`layer_major`), one row of X x Y cells per
    shower and layer: each count is then a sum over contiguous memory. OpenVINO, INT8, batch 32,
    1 thread: the rule alone on random logits 6.5 ms over the (B, X, Y, Z) tensor's axes 1 and
    2, 1.4-1.8 ms on the rows; the shipped default 24.6 vs 26.0 ms per batch (best of 15, same
    run). Where OpenVINO turns the 4-D sums into matrix products (the width step's moments)
    they were faster than rows: those stay 4-D. (On rows, a sum over the last axis followed by a
    product with a constant vector came out as garbage from the CPU plugin, 2026.4.)"""
    b, nz = hits.shape
    rows = layer_major(logit)                                                  # (B Z, X Y)
    need = hits.reshape(b * nz)
    lo = rows.amin(dim=1) - 1.0
    hi = rows.amax(dim=1)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        fired = (rows > mid[:, None]).to(rows.dtype).sum(dim=1)
        more = fired > need
        lo = torch.where(more, mid, lo)
        hi = torch.where(more, hi, mid)
    return logit - hi.reshape(b, nz)[:, None, None, :]


def layer_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, X, Y, Z) as (B Z, X Y): one contiguous row of a layer's cells per shower and
    layer (a copy)."""
    b, nx, ny, nz = x.shape
    return x.permute(0, 3, 1, 2).reshape(b * nz, nx * ny)


def _moments(p: torch.Tensor, u: torch.Tensor, v: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, S_u, S_uu, S_v, S_vv) (B, Z) of weights ``p`` (B, X, Y, Z) over a layer, ``u`` (X,)
    and ``v`` (Y,) the cell coordinates: two half reductions, then small ones."""
    px, py = p.sum(dim=2), p.sum(dim=1)                                           # (B, X/Y, Z)
    uu, vv = u[None, :, None], v[None, :, None]
    return (px.sum(dim=1), (px * uu).sum(dim=1), (px * uu * uu).sum(dim=1),
            (py * vv).sum(dim=1), (py * vv * vv).sum(dim=1))


def radial_width2(x: torch.Tensor) -> torch.Tensor:
    """(B, Z): ``var_x + var_y`` of each layer of ``x`` (B, X, Y, Z) >= 0, energy-weighted cell
    indices about the layer's centroid (cell units^2; 0 for an empty layer)."""
    u = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
    v = torch.arange(x.shape[2], dtype=x.dtype, device=x.device)
    s, su, suu, sv, svv = _moments(x, u, v)
    safe = torch.clamp(s, min=torch.finfo(x.dtype).tiny)
    w2 = suu / safe - (su / safe) ** 2 + svv / safe - (sv / safe) ** 2
    return torch.where(s > 0, torch.clamp(w2, min=0.0), torch.zeros_like(w2))


def width_contrast(x0: torch.Tensor, width2: torch.Tensor, target_gev: torch.Tensor,
                   threshold: float, iterations: int = WIDTH_ITERATIONS,
                   log_x0: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
    """``x0`` (B, X, Y, Z) GeV (> 0 where a cell fires, 0 elsewhere) with each layer's fired
    energies raised to the power ``a_l`` that gives it the radial width^2 ``width2`` (B, Z)
    (:func:`radial_width2` units), then scaled to sum to ``target_gev`` (B, Z). Newton's method
    on ``f(a) = ln(w^2(a) + c) - ln(width2 + c)`` from ``a = 1`` (``c`` = :data:`WIDTH_FLOOR`):
    with weights ``p_i = x_i^a``, ``dp_i/da = p_i ln x_i``, so ``dw^2/da`` is the weighted
    covariance of ``r_i^2 - 2 mu.r_i`` with ``ln x_i``. ``a`` stays in :data:`CONTRAST_RANGE`; a
    layer whose width does not move with ``a`` (one fired cell) keeps ``a = 1``. A fired cell
    gets no less than ``threshold`` (so the layer may end slightly above its energy: the
    caller's rescaling passes repair that), a cell that does not fire stays 0.

    ``log_x0``: ``(ln x0, c)`` when the caller has the logarithm cheaper (the sparse head: from
    its log energies; a ``Log`` ran 1.5 ms per INT8 batch of 32 in OpenVINO's reference kernel)
    and a bound ``c >= ln x0`` (its cap), used in place of each layer's maximum."""
    fired = x0 > 0
    if log_x0 is None:
        ell = torch.log(torch.where(fired, x0, torch.ones_like(x0)))
        top: torch.Tensor | float = ell.amax(dim=(1, 2), keepdim=True)
    else:
        ell, top = log_x0
    d = torch.where(fired, ell - top, torch.zeros_like(ell))                     # <= 0
    u = torch.arange(x0.shape[1], dtype=x0.dtype, device=x0.device)
    v = torch.arange(x0.shape[2], dtype=x0.dtype, device=x0.device)
    log_target = torch.log(width2 + WIDTH_FLOOR)
    a = torch.ones_like(width2)
    lo, hi = CONTRAST_RANGE
    for _ in range(iterations):
        p = torch.where(fired, torch.exp(torch.clamp(a[:, None, None, :] * d, min=_EXP_FLOOR)),
                        torch.zeros_like(d))
        s, su, suu, sv, svv = _moments(p, u, v)
        t, tu, tuu, tv, tvv = _moments(p * d, u, v)
        s = torch.clamp(s, min=1e-30)
        mu_u, mu_v, mean_d = su / s, sv / s, t / s
        w2 = torch.clamp(suu / s - mu_u ** 2 + svv / s - mu_v ** 2, min=0.0)
        # d/da of E[g] is Cov(g, d) = E[g d] - E[g] E[d]
        dw2 = (tuu / s - suu / s * mean_d) + (tvv / s - svv / s * mean_d) \
            - 2.0 * mu_u * (tu / s - mu_u * mean_d) - 2.0 * mu_v * (tv / s - mu_v * mean_d)
        slope = dw2 / (w2 + WIDTH_FLOOR)
        f = torch.log(w2 + WIDTH_FLOOR) - log_target
        step = torch.where(slope.abs() > 1e-6, f / torch.where(slope.abs() > 1e-6, slope,
                                                               torch.ones_like(slope)),
                           torch.zeros_like(f))
        a = torch.clamp(a - step, lo, hi)
    p = torch.exp(torch.clamp(a[:, None, None, :] * d, min=_EXP_FLOOR))
    total = torch.clamp(torch.where(fired, p, torch.zeros_like(p)).sum(dim=(1, 2)), min=1e-30)
    scaled = torch.clamp(p * (target_gev / total)[:, None, None, :], min=threshold)
    return torch.where(fired, scaled, torch.zeros_like(scaled))


__all__ = ["CONTRAST_RANGE", "COUNT_ITERATIONS", "WIDTH_FLOOR", "WIDTH_ITERATIONS", "count_rule",
           "layer_major", "radial_width2", "width_contrast"]
