"""One training iteration per architecture: the reference 3DGAN recipe and the ``phase`` recipe.

A *stepper* owns the generator, the discriminator and their optimizers for one run and turns a
real batch into optimizer steps; :func:`caloforge.gan.train.train` does the rest (data, epochs,
checkpoints, resume, validation) the same way for both.

* :class:`ReferenceStepper` -- svalleco/3Dgan energy-only (``docs/gan.md``): D on a real then a
  fake batch, 5 % label flips, ``gen_steps`` generator steps; BCE + MAPE(E/100) + MAPE(ECAL sum);
  optional profile-matching loss.
* :class:`PhaseStepper` -- the co-designed architecture of :mod:`caloforge.gan.phase`: one fake
  batch at the real batch's energies per iteration; D step (non-saturating BCE on real vs fake,
  R1 penalty ``r1_gamma`` on the real inputs: Mescheder et al., ICML 2018); G step:
  ``adv_weight`` x non-saturating adversarial loss + ``aux_weight`` x the per-energy-group mean/width
  matching of the high-level features (response, longitudinal profile, hits per layer,
  centroids, widths; :func:`caloforge.gan.features.grouped_moment_loss`) + ``aux_weight x
  ring_weight`` x the same matching of the transverse ring shape and of the classifier's
  summaries (:func:`caloforge.gan.features.ring_features`, ``summary_features``: transverse
  moments, hits above 3e-4 and 1e-5 GeV) + ``aux_weight x joint_weight`` x the covariance of
  the hit counts and the size about their trend in ln E (:mod:`caloforge.gan.joint`; off by
  default), gradient norm clipped at ``grad_clip``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import torch
import torch.nn.functional as F

from caloforge.errors import UserError
from caloforge.gan.data import CELL_THRESHOLD_GEV
from caloforge.gan.features import (
    RING_SUMMARY_FLOORS,
    grouped_moment_loss,
    ring_features,
    spectrum_features,
    summary_features,
)
from caloforge.gan.joint import joint_moment_loss, joint_statistics
from caloforge.gan.losses import ProfileMatchingLoss, bce, mape
from caloforge.gan.model import ENERGY_SCALE_GEV, Discriminator, Generator
from caloforge.gan.phase import (
    U_MAX,
    PhaseDiscriminator,
    PhaseGenerator,
    real_inputs,
)

ARCHITECTURES = ("3dgan", "phase")

#: Recipe defaults per architecture (what ``caloforge train`` uses for options not given):
#: the reference's RMSprop recipe, and the phase recipe of docs/gan.md.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "3dgan": {"optimizer": "rmsprop", "lr": 1e-3, "lr_d": None, "lr_decay": 1.0,
              "aux_weight": 0.0, "aux_groups": 4, "betas": (0.5, 0.999), "batch_size": 128},
    "phase": {"optimizer": "adam", "lr": 5e-4, "lr_d": 2e-4, "lr_decay": 0.95,
              "aux_weight": 10.0, "aux_groups": 8, "betas": (0.5, 0.9), "batch_size": 128},
}


def make_optimizer(kind: str, params: Any, lr: float, betas: tuple[float, float]
                   ) -> torch.optim.Optimizer:
    if kind == "rmsprop":
        # Keras RMSprop defaults: rho 0.9, epsilon 1e-7
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(float(betas[0]), float(betas[1])))
    raise UserError(f"optimizer {kind!r}: choose rmsprop or adam")


def sampling_fraction(poly: list[float], energies_gev: torch.Tensor) -> torch.Tensor:
    """f(E): the fitted sampling-fraction polynomial in ln(E/GeV)."""
    x = torch.log(energies_gev.double())
    out = torch.zeros_like(x)
    for c in poly:
        out = out * x + c
    return out.float()


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in module.parameters():
            p.requires_grad_(True)


class Stepper:
    """Shared state of a stepper: models, DDP wrappers, optimizers, the noise generator."""

    gen: torch.nn.Module
    disc: torch.nn.Module
    latent_dim: int

    def __init__(self, cfg: Any, device: torch.device, noise: torch.Generator,
                 e_range: tuple[float, float]) -> None:
        self.cfg = cfg
        self.device = device
        self.noise = noise
        self.e_lo, self.e_hi = e_range
        self.g_model: torch.nn.Module
        self.d_model: torch.nn.Module

    def finish_setup(self) -> None:
        cfg = self.cfg
        lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
        self.lr_d = lr_d
        self.opt_g = make_optimizer(cfg.optimizer, self.gen.parameters(), cfg.lr, cfg.betas)
        self.opt_d = make_optimizer(cfg.optimizer, self.disc.parameters(), lr_d, cfg.betas)
        self.g_model, self.d_model = self.gen, self.disc

    def wrap_ddp(self) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.g_model = DDP(self.gen, device_ids=ids)
        self.d_model = DDP(self.disc, device_ids=ids)

    def set_lr(self, epoch: int) -> None:
        f = self.cfg.lr_decay ** (epoch - 1)
        for g in self.opt_g.param_groups:
            g["lr"] = self.cfg.lr * f
        for g in self.opt_d.param_groups:
            g["lr"] = self.lr_d * f

    def latent(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=self.noise).to(self.device)

    def uniform_energies(self, n: int) -> torch.Tensor:
        return (self.e_lo + (self.e_hi - self.e_lo) * torch.rand(n, generator=self.noise)
                ).to(self.device)

    def step(self, real: torch.Tensor, e_real: torch.Tensor, it: int) -> dict[str, float]:
        raise NotImplementedError

    def forward_scaled(self, gen: torch.nn.Module) -> Callable[..., torch.Tensor]:
        """The call that BatchNorm re-estimation runs on a copy of the generator."""
        raise NotImplementedError


class ReferenceStepper(Stepper):
    """The 3DGAN recipe (module doc); images in internal units (GeV x ``image_scale``)."""

    def __init__(self, cfg: Any, device: torch.device, noise: torch.Generator,
                 e_range: tuple[float, float], stats: dict[str, Any], prior: Any) -> None:
        super().__init__(cfg, device, noise, e_range)
        gen = Generator(image_scale=cfg.image_scale)
        if cfg.shower_prior and prior is not None:
            gen.set_prior(torch.as_tensor(prior), 1.0)
        self.gen: Generator = gen.to(device)
        self.disc: Discriminator = Discriminator().to(device)
        self.latent_dim = gen.latent_dim
        self.sf_poly = stats["sf_poly"]
        self.aux = (ProfileMatchingLoss(stats, cfg.aux_groups, device=device)
                    if cfg.aux_weight > 0 else None)
        self.amp = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
                    else contextlib.nullcontext())

    def forward_scaled(self, gen: torch.nn.Module) -> Callable[..., torch.Tensor]:
        return cast(Callable[..., torch.Tensor], gen.forward_scaled)

    def _labels(self, value: float, n: int) -> torch.Tensor:
        lab = torch.full((n,), value)
        flip = torch.rand(n, generator=self.noise) < self.cfg.flip_prob
        return torch.where(flip, 1.0 - lab, lab).to(self.device)

    def _disc_step(self, real: torch.Tensor, e_real: torch.Tensor, logs: dict[str, float]) -> None:
        cfg, B = self.cfg, len(real)
        w_bce, w_e, _ = (float(w) for w in cfg.loss_weights)
        self.opt_d.zero_grad(set_to_none=True)
        with self.amp:
            p_r, e_r, _ = self.d_model(real)
        loss_r = w_bce * bce(p_r, self._labels(cfg.real_label, B)) + \
            w_e * mape(e_r, e_real / ENERGY_SCALE_GEV)
        loss_r.backward()
        self.opt_d.step()
        e_fake = self.uniform_energies(B)
        z = self.latent(B)
        with torch.no_grad(), self.amp:
            fake = self.gen.forward_scaled(z, e_fake)[:, 0].float()
        self.opt_d.zero_grad(set_to_none=True)
        with self.amp:
            p_f, e_f, _ = self.d_model(fake)
        loss_f = w_bce * bce(p_f, self._labels(0.0, B)) + w_e * mape(e_f, e_fake / ENERGY_SCALE_GEV)
        loss_f.backward()
        self.opt_d.step()
        logs["d_real"] = float(loss_r.detach())
        logs["d_fake"] = float(loss_f.detach())
        logs["d_acc"] = 0.5 * (float((p_r > 0.5).float().mean()) + float((p_f < 0.5).float().mean()))

    def _gen_loss(self, real: torch.Tensor, e_real: torch.Tensor, adversarial: bool,
                  logs: dict[str, float]) -> torch.Tensor:
        cfg, B = self.cfg, len(real)
        w_bce, w_e, w_ecal = (float(w) for w in cfg.loss_weights)
        e_gen = e_real if self.aux is not None else self.uniform_energies(B)
        z = self.latent(B)
        self.opt_g.zero_grad(set_to_none=True)
        with self.amp:
            fake = self.g_model.forward_scaled(z, e_gen)[:, 0] if self.g_model is self.gen \
                else self.g_model(z, e_gen) * self.gen.image_scale
        fake = fake.float()
        target_sum = e_gen * sampling_fraction(self.sf_poly, e_gen) * cfg.image_scale
        l_ecal = mape(fake.sum(dim=(1, 2, 3)), target_sum)
        loss = w_ecal * l_ecal
        logs["g_ecal"] = float(l_ecal.detach())
        if adversarial:
            with self.amp:
                p_g, e_g, _ = self.disc(fake)
            l_bce = bce(p_g, torch.ones(B, device=self.device))
            l_e = mape(e_g, e_gen / ENERGY_SCALE_GEV)
            loss = loss + w_bce * l_bce + w_e * l_e
            logs["g_bce"] = float(l_bce.detach())
            logs["g_energy"] = float(l_e.detach())
        if self.aux is not None:
            l_prof, l_mom = self.aux(fake, real, e_gen)
            loss = loss + cfg.aux_weight * (l_prof + l_mom)
            logs["g_aux_profile"] = float(l_prof.detach())
            logs["g_aux_moment"] = float(l_mom.detach())
        return loss

    def step(self, real: torch.Tensor, e_real: torch.Tensor, it: int) -> dict[str, float]:
        adversarial = it % self.cfg.adv_every == 0
        logs: dict[str, float] = {}
        if adversarial:
            self._disc_step(real, e_real, logs)
        with _frozen(self.disc):
            for _ in range(self.cfg.gen_steps):
                loss = self._gen_loss(real, e_real, adversarial, logs)
                check_finite(loss)
                loss.backward()
                self.opt_g.step()
        return logs


def check_finite(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the generator loss became {float(loss)}")


class PhaseStepper(Stepper):
    """The ``phase`` recipe (module doc); images in GeV."""

    def __init__(self, cfg: Any, device: torch.device, noise: torch.Generator,
                 e_range: tuple[float, float], stats: dict[str, Any], prior: Any) -> None:
        super().__init__(cfg, device, noise, e_range)
        self.threshold = CELL_THRESHOLD_GEV
        library = stats.get("layer_library")  # (knots, entries) or None
        gen = PhaseGenerator(cell_threshold_gev=self.threshold,
                             layer_library=None if library is None else tuple(library),
                             sparse=bool(stats.get("sparse_head", False)),
                             layer_occupancy=bool(stats.get("layer_occupancy", False)))
        disc = PhaseDiscriminator()
        if prior is not None:  # fresh run: data-derived buffers (restored from weights on resume)
            start = prior.get("init_state") or {}
            if start:  # start from another run's generator
                _load_init(gen, start)
            gen.set_prior(torch.as_tensor(prior["prior"]), torch.as_tensor(prior["prior_knots"]),
                          torch.as_tensor(prior["prior_sparse"]) if gen.sparse else None,
                          *(torch.as_tensor(prior[k]) if k in prior and k not in start else None
                            for k in ("occ_layer", "occ_global")))  # trained ones are kept
            if gen.layers is not None:
                gen.layers.fill_library(prior["layer_library"])
            disc.feature_mean.copy_(torch.as_tensor(prior["feature_mean"]))
            disc.feature_std.copy_(torch.as_tensor(prior["feature_std"]))
        self.gen: PhaseGenerator = gen.to(device)
        self.disc: PhaseDiscriminator = disc.to(device)
        self.latent_dim = gen.latent_dim

    def forward_scaled(self, gen: torch.nn.Module) -> Callable[..., torch.Tensor]:
        return cast(Callable[..., torch.Tensor], gen.forward_log)

    def step(self, real: torch.Tensor, e_real: torch.Tensor, it: int) -> dict[str, float]:
        cfg, B = self.cfg, len(real)
        disc = self.disc
        t_r, x_r, o_r = real_inputs(real, self.threshold)
        f_r = disc.features(x_r, o_r, e_real)
        # the fake showers get the real ones' layer energies when the model samples them from a
        # library at generation time (caloforge.gan.layers): the network learns the shape
        target = x_r.sum(dim=(1, 2)) if self.gen.layers is not None else None
        z = self.latent(B)
        t_f, x_f, o_f, u = self.gen.fake_parts(z, e_real, target) if self.g_model is self.gen \
            else self.g_model(z, e_real, layer_energies=target, parts=True)
        f_f = disc.features(x_f, o_f, e_real)
        logs: dict[str, float] = {}
        adversarial = it % cfg.adv_every == 0
        if adversarial:  # D step on real vs (detached) fake, R1 penalty on the real inputs
            self.opt_d.zero_grad(set_to_none=True)
            if cfg.r1_gamma > 0:
                t_r = t_r.detach().requires_grad_(True)
                f_r = f_r.detach().requires_grad_(True)
            s_r = self.d_model(t_r, f_r, e_real)
            s_f = self.d_model(t_f.detach(), f_f.detach(), e_real)
            loss_d = F.softplus(-s_r).mean() + F.softplus(s_f).mean()
            if cfg.r1_gamma > 0:
                g_t, g_f = torch.autograd.grad(s_r.sum(), (t_r, f_r), create_graph=True)
                r1 = g_t.square().sum(dim=(1, 2, 3)).mean() + g_f.square().sum(dim=1).mean()
                loss_d = loss_d + 0.5 * cfg.r1_gamma * r1
                logs["d_r1"] = float(r1.detach())
            loss_d.backward()
            self.opt_d.step()
            logs["d_loss"] = float(loss_d.detach())
            logs["d_acc"] = 0.5 * (float((s_r > 0).float().mean()) + float((s_f < 0).float().mean()))
        self.opt_g.zero_grad(set_to_none=True)
        l_mean, l_width = grouped_moment_loss(f_f, f_r, e_real, disc.feature_std, cfg.aux_groups)
        l_cap = torch.relu(u - U_MAX).square().mean()
        loss = cfg.aux_weight * (l_mean + l_width) + 100.0 * l_cap
        if cfg.ring_weight > 0:
            r_f = torch.cat([ring_features(x_f, o_f), summary_features(x_f, u)], dim=1)
            r_r = torch.cat([ring_features(x_r, o_r), summary_features(x_r, t_r.detach())], dim=1)
            floors = torch.tensor(RING_SUMMARY_FLOORS, device=r_r.device)
            r_mean, r_width = grouped_moment_loss(r_f, r_r, e_real,
                                                  torch.maximum(r_r.std(dim=0), floors).detach(),
                                                  cfg.aux_groups, torch.ones(r_r.shape[1]))
            # units: the batch's spread, at least the feature's floor (RING_SUMMARY_FLOORS)
            loss = loss + cfg.aux_weight * cfg.ring_weight * (r_mean + r_width)
            logs["g_ring"] = float((r_mean + r_width).detach())
        if cfg.spectrum_weight > 0:
            s_f, s_r = spectrum_features(t_f, o_f), spectrum_features(t_r.detach(), o_r)
            s_mean, s_width = grouped_moment_loss(s_f, s_r, e_real,
                                                  s_r.std(dim=0).clamp_min(0.25).detach(),
                                                  cfg.aux_groups, torch.ones(s_r.shape[1]))
            loss = loss + cfg.aux_weight * cfg.spectrum_weight * (s_mean + s_width)
            logs["g_spectrum"] = float((s_mean + s_width).detach())
        if cfg.joint_weight > 0:
            j_cov, j_mean = joint_moment_loss(joint_statistics(x_f, o_f),
                                              joint_statistics(x_r, o_r), e_real)
            loss = loss + cfg.aux_weight * cfg.joint_weight * (j_cov + j_mean)
            logs["g_joint"] = float((j_cov + j_mean).detach())
        logs["g_mean"] = float(l_mean.detach())
        logs["g_width"] = float(l_width.detach())
        if adversarial:
            with _frozen(disc):
                l_adv = F.softplus(-disc(t_f, f_f, e_real)).mean()
            loss = loss + cfg.adv_weight * l_adv
            logs["g_adv"] = float(l_adv.detach())
        check_finite(loss)
        loss.backward()
        if cfg.grad_clip > 0:
            logs["g_grad"] = float(torch.nn.utils.clip_grad_norm_(self.gen.parameters(),
                                                                   cfg.grad_clip))
        self.opt_g.step()
        return logs


def _load_init(gen: PhaseGenerator, state: dict[str, torch.Tensor]) -> None:
    """Load another run's generator weights as the start of ``gen`` (not its library); a tensor
    of ``gen`` it lacks must be one of the parts ``gen`` adds (:meth:`PhaseGenerator.added_tensors`)."""
    init = _adapt_init({k: v for k, v in state.items() if not k.startswith("layers.")}, gen)
    own = gen.state_dict()
    fresh = gen.added_tensors()
    missing = [k for k in own if k not in init and not k.startswith("layers.")]
    unexpected = [k for k in init if k not in own]
    wrong = [k for k in init if k in own and init[k].shape != own[k].shape]
    if unexpected or wrong or any(not k.startswith(fresh) for k in missing):
        raise UserError("init_generator: not a phase generator of this shape (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]}, other shape {wrong[:3]})")
    gen.load_state_dict(init, strict=False)


def _adapt_init(state: dict[str, torch.Tensor], gen: PhaseGenerator) -> dict[str, torch.Tensor]:
    """Starting weights of another phase run for ``gen``. A one-channel model's last layer
    learned a residual to the one-channel prior; a sparse head starts that layer afresh (small
    weights: the generator starts as its sparse prior plus noise) and takes everything else."""
    w = state.get("up2.weight")
    if gen.sparse and w is not None and w.shape[1] == 1:
        state = {k: v for k, v in state.items() if not k.startswith("up2.")}
    return state
