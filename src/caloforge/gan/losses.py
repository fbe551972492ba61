"""Losses of the 3DGAN training, and the optional profile-matching auxiliary loss.

Reference losses (Khattak et al., EPJC 82 (2022) 386; svalleco/3Dgan): binary cross-entropy for
real/fake, and mean absolute percentage errors (Keras ``MAPE``, in percent) for the energy
regression (E/100) and the ECAL sum. They are weighted [2, 0.1, 0.1].

The auxiliary loss (caloforge's addition, off by default) targets what the 3DGAN accuracy metric
measures: event-averaged longitudinal/transverse profiles and the averaged first and second
moments per energy bin. For a real batch and fakes generated at the *same* primary energies,
the batch is sorted by energy and cut into ``n_groups`` groups; in each group the mean
profiles (per unit primary energy) and mean per-event moments of the fakes are compared with
those of the real showers by the absolute log ratio ``|ln((fake + eps) / (real + eps))|`` (for
small differences the relative error the metric uses; unlike a relative L1 it penalises too little
energy as much as too much, so "output nothing" -- relative error 1 everywhere -- is not a cheap
minimum; eps is 1 % of the data's mean cell value). Because the fakes share the real events'
energies, the group means have the same expectation when the generator is right, so the loss does
not bias the model; it only adds a dense, low-variance training signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-7


def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with Keras' clipping of probabilities to [1e-7, 1 - 1e-7]."""
    return F.binary_cross_entropy(p.float().clamp(_EPS, 1 - _EPS), target.float())


def mape(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute percentage error in percent, as Keras: 100 mean(|t - p| / max(|t|, 1e-7))."""
    pred, target = pred.float(), target.float()
    return 100.0 * torch.mean(torch.abs(target - pred) / target.abs().clamp_min(_EPS))


def profiles(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Profiles of images ``x`` (B, X, Y, Z) along x, y and z: (B, X), (B, Y), (B, Z)."""
    return x.sum(dim=(2, 3)), x.sum(dim=(1, 3)), x.sum(dim=(1, 2))


def event_moments(x: torch.Tensor) -> torch.Tensor:
    """Per-event first and second moments (cell-index units) of the x, y, z profiles: (B, 2, 3).

    m1 = sum_i i S(i) / E, m2 = sum_i (i - m1)^2 S(i) / E, as in the 3DGAN metric (an empty
    image gives 0).
    """
    out = []
    for s in profiles(x.float()):
        idx = torch.arange(s.shape[1], dtype=s.dtype, device=s.device)
        tot = s.sum(dim=1).clamp_min(1e-6)
        m1 = (s * idx).sum(dim=1) / tot
        m2 = (s * (idx[None, :] - m1[:, None]) ** 2).sum(dim=1) / tot
        out.append(torch.stack([m1, m2], dim=1))
    return torch.stack(out, dim=2)


class ProfileMatchingLoss:
    """Group-wise |log ratio| of fake and real mean profiles and moments (see module doc).

    ``stats`` come from :func:`caloforge.gan.data.data_statistics`: ``profile_mean_{x,y,z}`` (mean
    profile per GeV of primary energy, internal units) set the per-cell ``eps`` (``rel_eps`` x
    mean, at least ``floor`` x the profile maximum); ``moment_scale`` (6 values) the moment eps.
    """

    def __init__(self, stats: dict, n_groups: int = 4, rel_eps: float = 0.01, floor: float = 1e-5,
                 device: torch.device | str = "cpu") -> None:
        self.n_groups = int(n_groups)
        self.eps = []
        for a in "xyz":
            m = torch.tensor(stats[f"profile_mean_{a}"], dtype=torch.float32, device=device)
            self.eps.append(rel_eps * m + floor * float(m.max()))
        self.moment_eps = rel_eps * torch.tensor(stats["moment_scale"], dtype=torch.float32,
                                                 device=device).reshape(2, 3).clamp_min(1e-3)

    def __call__(self, fake: torch.Tensor, real: torch.Tensor,
                 energies_gev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(profile term, moment term) for ``fake`` and ``real`` (B, X, Y, Z) at ``energies``."""
        fake, real = fake.float(), real.float()
        order = torch.argsort(energies_gev)
        groups = torch.tensor_split(order, min(self.n_groups, len(order)))
        e = energies_gev.float().reshape(-1, 1)
        prof_f = [p / e for p in profiles(fake)]
        prof_r = [p / e for p in profiles(real)]
        mom_f, mom_r = event_moments(fake), event_moments(real)
        lp = fake.new_zeros(())
        lm = fake.new_zeros(())
        for g in groups:
            for a in range(3):
                f = prof_f[a][g].mean(0) + self.eps[a]
                r = prof_r[a][g].mean(0) + self.eps[a]
                lp = lp + torch.log(f / r).abs().mean()
            f = mom_f[g].mean(0) + self.moment_eps
            r = mom_r[g].mean(0) + self.moment_eps
            lm = lm + torch.log(f / r).abs().mean()
        return lp / (3 * len(groups)), lm / len(groups)
