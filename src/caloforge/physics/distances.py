"""Distribution distances on high-level features, CaloChallenge-style.

* Separation power (CaloChallenge 2022; Krause et al., arXiv 2410.21611):
  S = 1/2 sum_i (h1_i - h2_i)^2 / (h1_i + h2_i) on unit-sum histograms; 0 identical, 1 disjoint.
* FPD, the Frechet distance of Gaussians fitted to standardised features (Kansal et al.,
  arXiv 2211.10295; features mapped to normal scores of the reference, see :func:`standardise`): |mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)), extrapolated to infinite
  sample size by a straight-line fit in 1/N.
* KPD, the unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^3 (Kansal et al.;
  Binkowski et al., arXiv 1801.01401), estimated on random blocks: mean and standard error.
* Classifier test: ROC AUC of a classifier telling candidate from reference on a held-out split.
"""

from __future__ import annotations

import numpy as np

from caloforge.errors import UserError

#: Number of quantile bins of the reference used for continuous features.
SEP_BINS = 30


# ---------------------------------------------------------------------------- separation power
def histogram_edges(ref: np.ndarray, cand: np.ndarray, n_bins: int = SEP_BINS) -> np.ndarray:
    """Interior bin edges for the separation power of one feature.

    Integer-valued features with at most 100 distinct values get one bin per value; otherwise
    ``n_bins`` quantile bins spanning the reference range [min, max] (duplicate edges merged,
    so a point mass such as zero-width empty layers gets its own bin), plus an underflow and an
    overflow bin for candidate values outside the reference range, so every value is counted
    and disjoint samples give S = 1.
    """
    both = np.concatenate([ref, cand])
    if np.all(both == np.round(both)):
        vals = np.unique(both)
        if vals.size <= 100:
            return (vals[:-1] + vals[1:]) / 2.0
    q = np.quantile(ref, np.linspace(0.0, 1.0, n_bins + 1))
    q[-1] = np.nextafter(q[-1], np.inf)  # the reference maximum belongs to the last inner bin
    return np.unique(q)


def separation_power(ref: np.ndarray, cand: np.ndarray, edges: np.ndarray | None = None) -> float:
    """S = 1/2 sum (h1 - h2)^2 / (h1 + h2) of unit-normalised histograms (0 = identical)."""
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    cand = np.asarray(cand, dtype=np.float64).reshape(-1)
    if ref.size == 0 or cand.size == 0:
        raise UserError("separation power: empty sample")
    if edges is None:
        edges = histogram_edges(ref, cand)
    nb = edges.size + 1
    h1 = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=nb) / ref.size
    h2 = np.bincount(np.searchsorted(edges, cand, side="right"), minlength=nb) / cand.size
    return separation_power_hist(h1, h2)


def separation_power_hist(h1: np.ndarray, h2: np.ndarray) -> float:
    """Separation power of two histograms (normalised here to unit sum; empty bins ignored)."""
    h1 = np.asarray(h1, dtype=np.float64)
    h2 = np.asarray(h2, dtype=np.float64)
    s1, s2 = h1.sum(), h2.sum()
    if s1 <= 0 or s2 <= 0:
        return 1.0 if (s1 > 0) != (s2 > 0) else 0.0
    h1, h2 = h1 / s1, h2 / s2
    tot = h1 + h2
    pos = tot > 0
    return float(0.5 * np.sum((h1[pos] - h2[pos]) ** 2 / tot[pos]))


def separation_powers(ref: np.ndarray, cand: np.ndarray, names: list[str]) -> dict[str, float]:
    """Separation power of every column of ``ref`` / ``cand`` (``(N, d)`` feature matrices)."""
    return {n: separation_power(ref[:, j], cand[:, j]) for j, n in enumerate(names)}


# ---------------------------------------------------------------------------- standardisation
def standardise(ref: np.ndarray, *others: np.ndarray, method: str = "quantile"
                ) -> tuple[list[np.ndarray], np.ndarray]:
    """Transform feature matrices with a map fitted on the reference; drop constant columns.

    ``method="quantile"`` (default, used for FPD and KPD): each feature x becomes
    Phi^-1(F_ref(x)), F_ref the empirical CDF of the reference (mid-rank for ties, clipped to
    [1/2N, 1 - 1/2N], so values outside the reference range map to about +-3.9 for N = 10k).
    The reference features are then standard normal one by one, and heavy tails (per-layer
    centres of nearly empty layers have kurtosis > 1000) no longer dominate the covariance
    estimates; with plain z-scores the MC-vs-MC FPD stays at ~1.3 even after the 1/N
    extrapolation, with the quantile map at ~0 (docs/validation.md).
    ``method="zscore"``: (x - mean_ref) / std_ref.
    Returns ``([ref_t, *others_t], kept_columns_mask)``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    mats = [ref, *(np.asarray(m, dtype=np.float64) for m in others)]
    if method == "zscore":
        mu = ref.mean(axis=0)
        sd = ref.std(axis=0)
        keep = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
        return [(m[:, keep] - mu[keep]) / sd[keep] for m in mats], keep
    if method != "quantile":
        raise ValueError(f"unknown standardisation {method!r}")
    from scipy.special import ndtri

    srt = np.sort(ref, axis=0)
    keep = srt[-1] > srt[0]
    n = len(ref)
    out = [np.empty((len(m), int(keep.sum()))) for m in mats]
    for jj, j in enumerate(np.flatnonzero(keep)):
        col = srt[:, j]
        for m, o in zip(mats, out, strict=True):
            lo = np.searchsorted(col, m[:, j], side="left")
            hi = np.searchsorted(col, m[:, j], side="right")
            u = np.clip((lo + hi) / (2.0 * n), 0.5 / n, 1.0 - 0.5 / n)
            o[:, jj] = ndtri(u)
    return out, keep


# ---------------------------------------------------------------------------- FPD
def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to ``x`` and ``y`` (``(n, d)`` each).

    Tr((C1 C2)^(1/2)) is computed as the sum of sqrt of the eigenvalues of
    C1^(1/2) C2 C1^(1/2) (symmetric, so ``eigh``; no complex round-off).
    """
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    c1 = np.atleast_2d(np.cov(x, rowvar=False))
    c2 = np.atleast_2d(np.cov(y, rowvar=False))
    w, v = np.linalg.eigh(c1)
    s1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    ev = np.linalg.eigvalsh(s1 @ c2 @ s1)
    tr_sqrt = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def fpd(x: np.ndarray, y: np.ndarray, n_points: int = 6, n_batches: int = 5,
        min_samples: int | None = None, seed: int = 0) -> dict[str, float]:
    """FPD extrapolated to infinite sample size (CaloChallenge / JetNet procedure).

    For ``n_points`` sample sizes N from ``min_samples`` (default: a fifth of the smaller sample,
    at least 2 d) to the smaller sample size, the Frechet distance is averaged over ``n_batches``
    random subsamples (without replacement) of both samples; a straight line in 1/N is fitted and
    its intercept (N -> infinity) is the FPD. ``error`` is the intercept's standard error.
    ``x``, ``y`` are standardised feature matrices. Returns ``{"value", "error", "n_max"}``.
    """
    rng = np.random.default_rng(seed)
    n_max = min(len(x), len(y))
    d = x.shape[1]
    if n_max < max(10, d + 2):
        raise UserError(f"FPD: {n_max} events are too few for {d} features")
    n_min = min_samples or max(n_max // 5, 2 * d, 10)
    n_min = min(n_min, n_max)
    ns = np.unique(np.linspace(n_min, n_max, n_points).astype(int))
    vals = []
    for n in ns:
        fds = []
        for _ in range(n_batches if n < n_max or len(x) != len(y) else 1):
            ix = rng.choice(len(x), n, replace=False) if n < len(x) else np.arange(len(x))
            iy = rng.choice(len(y), n, replace=False) if n < len(y) else np.arange(len(y))
            fds.append(frechet_distance(x[ix], y[iy]))
        vals.append(np.mean(fds))
    inv = 1.0 / ns.astype(np.float64)
    vals_a = np.asarray(vals)
    if ns.size >= 3:
        a = np.vstack([np.ones_like(inv), inv]).T
        coef, _, _, _ = np.linalg.lstsq(a, vals_a, rcond=None)
        dof = ns.size - 2
        resid = vals_a - a @ coef
        sigma2 = float(resid @ resid) / dof
        cov = sigma2 * np.linalg.inv(a.T @ a)
        value, err = float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    else:
        value, err = float(vals_a[-1]), float("inf")
    return {"value": value, "error": err if np.isfinite(err) else -1.0, "n_max": int(n_max),
            "raw_at_n_max": float(vals_a[-1])}


# ---------------------------------------------------------------------------- KPD
def _mmd2_unbiased_poly(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kpd(x: np.ndarray, y: np.ndarray, block_size: int = 1000, n_blocks: int = 10,
        seed: int = 0) -> dict[str, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random blocks.

    Each of ``n_blocks`` estimates uses ``block_size`` events drawn without replacement from each
    sample; a sample smaller than ``2 * block_size`` gets blocks of half its size, so that the
    blocks differ and their spread measures the error (blocks of the whole sample would all be
    the same estimate, with a zero error). Returns ``{"value": mean, "error": standard error of
    the mean, "block_size"}``. Can be slightly negative for identical distributions (unbiased
    estimator).
    """
    rng = np.random.default_rng(seed)
    n_min = min(len(x), len(y))
    b = block_size if n_min >= 2 * block_size else n_min // 2
    if b < 2:
        raise UserError("KPD: fewer than 2 events")
    vals = []
    for _ in range(n_blocks):
        ix = rng.choice(len(x), b, replace=False)
        iy = rng.choice(len(y), b, replace=False)
        vals.append(_mmd2_unbiased_poly(x[ix], y[iy]))
    v = np.asarray(vals)
    err = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
    return {"value": float(v.mean()), "error": err, "block_size": int(b)}


# ---------------------------------------------------------------------------- classifier
def classifier_auc(ref: np.ndarray, cand: np.ndarray, seed: int = 0, test_fraction: float = 0.3,
                   max_events: int | None = 20000, n_threads: int | None = 1) -> dict[str, float]:
    """ROC AUC of a gradient-boosted-trees classifier telling ``cand`` from ``ref``.

    sklearn ``HistGradientBoostingClassifier`` (200 iterations max, early stopping on an
    internal 10 % validation split), trained on ``1 - test_fraction`` of each sample and
    evaluated on the rest (the same event indices in both samples, seeded). 0.5 = indistinguishable, 1 = separable.
    At most ``max_events`` per sample are used (random, seeded). Trees need no feature scaling.
    ``n_threads`` caps the OpenMP threads of the trees (default 1: on a busy machine OpenMP
    threads spin-wait for each other and run 10-30x slower; ``None`` = library default).
    Returns ``{"auc", "n_train", "n_test", "n_test_ref", "n_test_cand"}``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    if max_events is not None:
        if len(ref) > max_events:
            ref = ref[rng.choice(len(ref), max_events, replace=False)]
        if len(cand) > max_events:
            cand = cand[rng.choice(len(cand), max_events, replace=False)]
    if min(len(ref), len(cand)) < 10:
        raise UserError("classifier test: fewer than 10 events in a sample")
    # Same split of event indices in both samples (when they have the same size), so an event
    # present in both samples (identical files) is in the training or the test half for both
    # labels; otherwise a memorised duplicate would push the AUC below 0.5.
    def split(n: int, perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        p = perm if perm is not None else rng.permutation(n)
        k = max(1, round(test_fraction * n))
        return p[k:], p[:k]

    perm = rng.permutation(len(ref))
    tr_r, te_r = split(len(ref), perm)
    tr_c, te_c = split(len(cand), perm if len(cand) == len(ref) else None)
    xtr = np.vstack([ref[tr_r], cand[tr_c]]).astype(np.float32)
    ytr = np.concatenate([np.zeros(len(tr_r)), np.ones(len(tr_c))]).astype(np.int8)
    xte = np.vstack([ref[te_r], cand[te_c]]).astype(np.float32)
    yte = np.concatenate([np.zeros(len(te_r)), np.ones(len(te_c))]).astype(np.int8)
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=31,
                                         early_stopping=True, validation_fraction=0.1,
                                         n_iter_no_change=10, random_state=seed)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        clf.fit(xtr, ytr)
        prob = clf.predict_proba(xte)[:, 1]
    auc = float(roc_auc_score(yte, prob))
    return {"auc": auc, "n_train": len(ytr), "n_test": len(yte), "n_test_ref": len(te_r),
            "n_test_cand": len(te_c)}
