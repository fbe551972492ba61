"""Training of the 3DGAN generator/discriminator (``caloforge train`` wraps :func:`train`).

Recipe (svalleco/3Dgan energy-only, see ``docs/gan.md``): per iteration the discriminator is
trained on a real batch, then on a fake batch (fake energies uniform over the training range),
with 5 % of the real/fake labels flipped; then the generator takes ``gen_steps`` (2) steps.
Losses: BCE(real/fake), MAPE(E/100 regression), MAPE(ECAL sum vs E x f(E)), weights [2, 0.1, 0.1];
f is a polynomial in ln E fitted to the training data's sampling fraction. Optional: the
profile-matching auxiliary loss (:mod:`caloforge.gan.losses`), ``aux_weight`` > 0.

Checkpoints every epoch (safetensors + JSON, atomic; :mod:`caloforge.gan.checkpoint`); ``resume``
continues exactly. Multi-process: launched by ``torchrun`` (``WORLD_SIZE`` > 1) the models are
wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA) and the HDF5 stream is sharded.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caloforge.atomic import write_json, write_text
from caloforge.errors import UserError
from caloforge.gan import resume
from caloforge.gan.checkpoint import (
    apply_state,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_generator,
    save_tensors,
)
from caloforge.gan.data import ShowerStream, data_statistics, energy_range_of
from caloforge.gan.losses import ProfileMatchingLoss, bce, mape
from caloforge.gan.model import ENERGY_SCALE_GEV, Discriminator, Generator

#: Config fields that must not change when a run is resumed.
_FROZEN = ("data", "batch_size", "seed", "image_scale", "max_events", "block_events",
           "optimizer", "aux_groups", "shower_prior")


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in every checkpoint).

    Energies in GeV; ``loss_weights`` = (BCE, energy MAPE, ECAL-sum MAPE); ``aux_weight`` = weight
    of the profile-matching loss (0 = pure reference recipe); ``adv_every`` = run the
    discriminator (and the adversarial/energy terms of the generator loss) every k-th iteration,
    the other iterations train the generator on the ECAL-sum and auxiliary terms only (1 =
    reference). ``lr_d`` defaults to ``lr``; ``lr_decay`` multiplies both per epoch.
    """

    data: str
    output: str
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0
    validation: str | None = None
    validation_events: int = 5000
    device: str = "cpu"
    bf16: bool = False
    resume: bool = False
    optimizer: str = "rmsprop"          # "rmsprop" (reference) or "adam"
    lr: float = 1e-3
    lr_d: float | None = None
    betas: tuple[float, float] = (0.5, 0.999)
    lr_decay: float = 1.0
    loss_weights: tuple[float, float, float] = (2.0, 0.1, 0.1)
    aux_weight: float = 0.0
    aux_groups: int = 4
    shower_prior: bool = False          # multiply the output by the data's mean shower x E/100
    gen_steps: int = 2
    adv_every: int = 1
    flip_prob: float = 0.05
    real_label: float = 1.0
    image_scale: float = 100.0
    max_events: int | None = None
    block_events: int = 512
    threads: int | None = None
    keep_checkpoints: int = 2
    progress: bool = True
    bn_recalibration_batches: int = 16
    bn_recalibration_batch: int = 64
    log_every: int = 0                  # also log running losses to train.log every k batches

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["loss_weights"] = list(self.loss_weights)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        for k in ("betas", "loss_weights"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass
class TrainResult:
    """Outcome of :func:`train`: run directory, epochs done, best epoch and metric, history."""

    output: Path
    epochs_done: int
    best_epoch: int | None
    best_metric: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0


# ----------------------------------------------------------------------------- helpers
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _make_optimizer(cfg: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        # Keras RMSprop defaults: rho 0.9, epsilon 1e-7
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))
    raise UserError(f"--optimizer {cfg.optimizer!r}: choose rmsprop or adam")


def sampling_fraction(poly: list[float], energies_gev: torch.Tensor) -> torch.Tensor:
    """f(E): the fitted sampling-fraction polynomial in ln(E/GeV)."""
    x = torch.log(energies_gev.double())
    out = torch.zeros_like(x)
    for c in poly:
        out = out * x + c
    return out.float()


def _bn_recalibrated(gen: Generator, lo: float, hi: float, batches: int, batch: int,
                     seed: int, device: torch.device) -> Generator:
    """Copy of ``gen`` (eval mode) whose BatchNorm statistics are re-estimated exactly for the
    current weights (cumulative average over ``batches`` batches at uniform energies)."""
    g = copy.deepcopy(gen)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    gen_rng = torch.Generator(device="cpu").manual_seed(seed)
    g.train()
    with torch.no_grad():
        for _ in range(batches):
            z = torch.randn(batch, g.latent_dim, generator=gen_rng).to(device)
            e = (lo + (hi - lo) * torch.rand(batch, generator=gen_rng)).to(device)
            g.forward_scaled(z, e)
    for m in bns:
        m.momentum = 0.01
    return g.eval()


class Validator:
    """3DGAN metric of generated showers vs a held-out MC file (profiles streamed by chunks)."""

    def __init__(self, path: str, max_events: int, seed: int) -> None:
        from caloforge.data import open_showers
        from caloforge.physics.observables import profiles as np_profiles
        from caloforge.physics.shape_metric import ShapeMetric, ShapeSample

        self._profiles = np_profiles
        self._sample = ShapeSample
        px, py, pz, es = [], [], [], []
        with open_showers(path) as f:
            if f.grid != (25, 25, 25):
                raise UserError(f"{path}: grid {f.grid}; the 3DGAN model needs (25, 25, 25)")
            for img, e in f.iter_chunks(500, 0, max_events):
                a, b, c, _, _ = np_profiles(img)
                px.append(a)
                py.append(b)
                pz.append(c)
                es.append(e)
        self.energies = np.concatenate(es)
        self.reference = ShapeSample(self.energies, (np.concatenate(px), np.concatenate(py),
                                                     np.concatenate(pz)))
        self.metric = ShapeMetric(self.reference)
        self.seed = seed
        self.path = path

    def generate_sample(self, gen: Generator, device: torch.device, chunk: int = 250) -> Any:
        rng = torch.Generator(device="cpu").manual_seed(self.seed)
        px, py, pz = [], [], []
        with torch.no_grad():
            for lo in range(0, len(self.energies), chunk):
                e = torch.from_numpy(self.energies[lo:lo + chunk]).float()
                z = torch.randn(len(e), gen.latent_dim, generator=rng)
                img = gen(z.to(device), e.to(device)).float().cpu().numpy()
                a, b, c, _, _ = self._profiles(img)
                px.append(a)
                py.append(b)
                pz.append(c)
        return self._sample(self.energies, (np.concatenate(px), np.concatenate(py), np.concatenate(pz)))

    def __call__(self, gen: Generator, device: torch.device) -> dict[str, Any]:
        b = self.metric.breakdown(self.generate_sample(gen, device))
        return {"metric": b["metric"], "moment_term": b["moment_term"],
                "profile_term": b["profile_term"], "n_bins_used": b["n_bins_used"]}


def _ckpt_dir(out: Path) -> Path:
    return out / "checkpoints"


def latest_checkpoint(out: Path) -> tuple[int, dict[str, Any]] | None:
    """(epoch, state JSON) of the newest complete checkpoint in run directory ``out``."""
    d = _ckpt_dir(out)
    if not d.is_dir():
        return None
    for js in sorted(d.glob("epoch-*.json"), reverse=True):
        try:
            state = json.loads(js.read_text())
            epoch = int(state["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        stem = js.with_suffix("")
        if (stem.with_suffix(".safetensors").is_file()
                and Path(f"{stem}.state.safetensors").is_file()):
            return epoch, state
    return None


def _rng_tensor(state: torch.Tensor) -> torch.Tensor:
    return state.clone().to(torch.uint8)


# ----------------------------------------------------------------------------- training
def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a run; returns a :class:`TrainResult`. See the module doc."""
    cfg = config
    t_start = time.perf_counter()
    rank, world, local = _dist_info()
    distributed = world > 1
    resume.check_values(cfg)
    if cfg.device not in ("cpu", "cuda"):
        raise UserError(f"--device {cfg.device!r}: choose cpu or cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = torch.device(f"cuda:{local}" if cfg.device == "cuda" else "cpu")
    if cfg.device == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if cfg.bf16 and cfg.device == "cpu" and not torch.backends.mkldnn.is_available():
        raise UserError("--bf16: this PyTorch build has no oneDNN (mkldnn) CPU support")
    for name in ("epochs", "batch_size", "gen_steps", "adv_every", "aux_groups"):
        if int(getattr(cfg, name)) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1")
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cfg.device == "cuda" else "gloo")

    out = Path(cfg.output)
    if cfg.resume:
        resume.require_run(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _ckpt_dir(out).mkdir(exist_ok=True)
        (out / "generators").mkdir(exist_ok=True)

    # ---- resume or fresh start
    found = resume.find_checkpoint(out, (lambda m: _log(out, m)) if rank == 0 else None)
    if found is not None and not cfg.resume:
        raise UserError(f"{out}: holds checkpoints up to epoch {found[0]}; pass --resume to continue "
                        "or choose another --output")
    if cfg.resume and found is not None:
        resume.check_resume(out, found, cfg, world, _FROZEN)

    data_path = Path(cfg.data)
    e_lo, e_hi = energy_range_of(data_path, cfg.max_events)
    stream = ShowerStream(data_path, cfg.batch_size, cfg.seed, cfg.image_scale, rank, world,
                          cfg.block_events, cfg.max_events)
    prior = None
    if found is not None and cfg.resume:
        stats = found[1]["data_statistics"]
    else:
        stats = data_statistics(data_path, cfg.image_scale)
        prior = stats.pop("prior")
    aux = ProfileMatchingLoss(stats, cfg.aux_groups, device=device) if cfg.aux_weight > 0 else None
    validator = (Validator(cfg.validation, cfg.validation_events, cfg.seed + 7919)
                 if cfg.validation and rank == 0 else None)

    torch.manual_seed(cfg.seed)
    gen = Generator(image_scale=cfg.image_scale)
    if cfg.shower_prior and prior is not None:
        gen.set_prior(torch.as_tensor(prior), 1.0)
    gen = gen.to(device)
    disc = Discriminator().to(device)
    lr_d = cfg.lr if cfg.lr_d is None else cfg.lr_d
    opt_g = _make_optimizer(cfg, gen.parameters(), cfg.lr)
    opt_d = _make_optimizer(cfg, disc.parameters(), lr_d)
    noise = torch.Generator(device="cpu")
    noise.manual_seed(int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0]))
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rank, 1]).generate_state(1)[0]))
    history: list[dict[str, Any]] = []
    best_epoch: int | None = None
    best_metric: float | None = None
    start_epoch = 1
    wall_before = 0.0

    if found is not None and cfg.resume:
        epoch, st = found
        stem = _ckpt_dir(out) / f"epoch-{epoch:04d}"
        weights = load_tensors(f"{stem}.safetensors", "checkpoint")
        apply_state(gen, {k[10:]: v for k, v in weights.items() if k.startswith("generator.")},
                    f"{stem}.safetensors", "generator checkpoint")
        apply_state(disc, {k[14:]: v for k, v in weights.items() if k.startswith("discriminator.")},
                    f"{stem}.safetensors", "discriminator checkpoint")
        extra = load_tensors(f"{stem}.state.safetensors", "checkpoint state")
        optimizer_from_tensors(opt_g, "optG", extra, st["optimizers"]["G"], f"{stem}.state.safetensors")
        optimizer_from_tensors(opt_d, "optD", extra, st["optimizers"]["D"], f"{stem}.state.safetensors")
        noise.set_state(_rng_tensor(extra[f"rng.noise.{rank}"]))
        torch.set_rng_state(_rng_tensor(extra[f"rng.torch.{rank}"]))
        if device.type == "cuda" and f"rng.cuda.{rank}" in extra:
            torch.cuda.set_rng_state(_rng_tensor(extra[f"rng.cuda.{rank}"]), device)
        random.setstate(_to_tuple(st["rng"]["python"]))
        np_state = st["rng"]["numpy"]
        np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
        history = st.get("history", [])
        best_epoch, best_metric = st.get("best_epoch"), st.get("best_metric")
        start_epoch = epoch + 1
        wall_before = float(st.get("wall_seconds", 0.0))
        if rank == 0:
            _log(out, f"resumed from epoch {epoch}")

    g_model: torch.nn.Module = gen
    d_model: torch.nn.Module = disc
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_model = DDP(gen, device_ids=ids)
        d_model = DDP(disc, device_ids=ids)

    w_bce, w_e, w_ecal = (float(w) for w in cfg.loss_weights)
    sf_poly = stats["sf_poly"]
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16
           else contextlib.nullcontext())
    B = cfg.batch_size

    def uniform_energies(n: int) -> torch.Tensor:
        return (e_lo + (e_hi - e_lo) * torch.rand(n, generator=noise)).to(device)

    def labels(value: float, n: int) -> torch.Tensor:
        lab = torch.full((n,), value)
        flip = torch.rand(n, generator=noise) < cfg.flip_prob
        lab = torch.where(flip, 1.0 - lab, lab)
        return lab.to(device)

    def set_lr(epoch: int) -> None:
        f = cfg.lr_decay ** (epoch - 1)
        for g in opt_g.param_groups:
            g["lr"] = cfg.lr * f
        for g in opt_d.param_groups:
            g["lr"] = lr_d * f

    epochs_done = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        set_lr(epoch)
        gen.train()
        disc.train()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        t0 = time.perf_counter()
        bar = None
        if cfg.progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=stream.batches_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}",
                       unit="batch", leave=False, dynamic_ncols=True)
        for it, (img_np, e_np) in enumerate(stream.epoch_batches(epoch)):
            real = torch.from_numpy(img_np).to(device)
            e_real = torch.from_numpy(e_np).float().to(device)
            adversarial = it % cfg.adv_every == 0
            logs: dict[str, float] = {}
            if adversarial:
                # --- discriminator: a real batch, then a fake batch (two optimizer steps)
                for p in disc.parameters():
                    p.requires_grad_(True)
                opt_d.zero_grad(set_to_none=True)
                with amp:
                    p_r, e_r, _ = d_model(real)
                loss_r = w_bce * bce(p_r, labels(cfg.real_label, B)) + \
                    w_e * mape(e_r, e_real / ENERGY_SCALE_GEV)
                loss_r.backward()
                opt_d.step()
                e_fake = uniform_energies(B)
                z = torch.randn(B, gen.latent_dim, generator=noise).to(device)
                with torch.no_grad(), amp:
                    fake = gen.forward_scaled(z, e_fake)[:, 0].float()
                opt_d.zero_grad(set_to_none=True)
                with amp:
                    p_f, e_f, _ = d_model(fake)
                loss_f = w_bce * bce(p_f, labels(0.0, B)) + w_e * mape(e_f, e_fake / ENERGY_SCALE_GEV)
                loss_f.backward()
                opt_d.step()
                logs["d_real"] = float(loss_r.detach())
                logs["d_fake"] = float(loss_f.detach())
                logs["d_acc"] = 0.5 * (float((p_r > 0.5).float().mean()) + float((p_f < 0.5).float().mean()))
            # --- generator steps (the discriminator is frozen: no weight gradients)
            for p in disc.parameters():
                p.requires_grad_(False)
            for _ in range(cfg.gen_steps):
                e_gen = e_real if aux is not None else uniform_energies(B)
                z = torch.randn(B, gen.latent_dim, generator=noise).to(device)
                opt_g.zero_grad(set_to_none=True)
                with amp:
                    fake = g_model.forward_scaled(z, e_gen)[:, 0] if not distributed else \
                        g_model(z, e_gen) * gen.image_scale
                fake = fake.float()
                target_sum = e_gen * sampling_fraction(sf_poly, e_gen) * cfg.image_scale
                l_ecal = mape(fake.sum(dim=(1, 2, 3)), target_sum)
                loss = w_ecal * l_ecal
                logs["g_ecal"] = float(l_ecal.detach())
                if adversarial:
                    with amp:
                        p_g, e_g, _ = disc(fake)
                    l_bce = bce(p_g, torch.ones(B, device=device))
                    l_e = mape(e_g, e_gen / ENERGY_SCALE_GEV)
                    loss = loss + w_bce * l_bce + w_e * l_e
                    logs["g_bce"] = float(l_bce.detach())
                    logs["g_energy"] = float(l_e.detach())
                if aux is not None:
                    l_prof, l_mom = aux(fake, real, e_gen)
                    loss = loss + cfg.aux_weight * (l_prof + l_mom)
                    logs["g_aux_profile"] = float(l_prof.detach())
                    logs["g_aux_moment"] = float(l_mom.detach())
                if not torch.isfinite(loss):
                    raise UserError(f"{out}: the generator loss became {float(loss)} at epoch {epoch}, "
                                    f"batch {it}; lower --lr or check the data")
                loss.backward()
                opt_g.step()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if cfg.log_every and rank == 0 and (it + 1) % cfg.log_every == 0:
                run_means = " ".join(f"{k}={sums[k] / counts[k]:.4g}" for k in sums)
                rate = (it + 1) * B * world / (time.perf_counter() - t0)
                _log(out, f"epoch {epoch} batch {it + 1}/{stream.batches_per_epoch} "
                          f"{rate:.3g} samples/s {run_means}")
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in
                                 ("d_real", "d_fake", "g_bce", "g_ecal", "g_aux_profile")})
        for p in disc.parameters():
            p.requires_grad_(True)
        if bar is not None:
            bar.close()
        train_s = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch, "train_seconds": train_s,
                               "samples_per_s": stream.batches_per_epoch * B * world / train_s,
                               "lr": cfg.lr * cfg.lr_decay ** (epoch - 1)}
        row.update({k: sums[k] / counts[k] for k in sums})
        rng_states = [(noise.get_state(), torch.get_rng_state(),
                       torch.cuda.get_rng_state(device) if device.type == "cuda" else None)]
        if distributed:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        if rank == 0:
            g_eval = _bn_recalibrated(gen, e_lo, e_hi, cfg.bn_recalibration_batches,
                                      cfg.bn_recalibration_batch,
                                      cfg.seed + 104729, device)
            if validator is not None:
                tv = time.perf_counter()
                row.update({f"val_{k}": v for k, v in validator(g_eval, device).items()})
                row["val_seconds"] = time.perf_counter() - tv
            row["wall_seconds"] = wall_before + time.perf_counter() - t_start
            history.append(row)
            gmeta = {"epoch": epoch, "energy_range_gev": [e_lo, e_hi],
                     "val_metric": row.get("val_metric"), "config": cfg.to_json()}
            save_generator(g_eval, out / "generators" / f"epoch-{epoch:04d}.safetensors", gmeta)
            m = row.get("val_metric")
            if m is not None and (best_metric is None or m < best_metric):
                best_metric, best_epoch = float(m), epoch
                save_generator(g_eval, out / "best.safetensors", gmeta)
                write_json(out / "best.json", {"epoch": epoch, "metric": m, "row": row})
            _save_checkpoint(out, epoch, cfg, gen, disc, opt_g, opt_d, rng_states, stats, history,
                             best_epoch, best_metric, row["wall_seconds"], world, (e_lo, e_hi))
            write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            msg = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            _log(out, msg)
        epochs_done = epoch
        if distributed:
            torch.distributed.barrier()
    wall = wall_before + time.perf_counter() - t_start
    return TrainResult(out, epochs_done, best_epoch, best_metric, history, wall)


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _log(out: Path, msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with open(out / "train.log", "a") as fh:
        fh.write(f"{stamp} {msg}\n")


def _save_checkpoint(out: Path, epoch: int, cfg: TrainConfig, gen: Generator, disc: Discriminator,
                     opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                     rng_states: list[Any], stats: dict, history: list, best_epoch: int | None,
                     best_metric: float | None, wall: float, world: int,
                     e_range: tuple[float, float]) -> None:
    """Write checkpoint ``epoch`` (weights, optimizer + RNG tensors, then the JSON) atomically.

    With several processes, RNG states of every rank are gathered (each rank has its own noise
    stream); rank 0 writes.
    """
    stem = _ckpt_dir(out) / f"epoch-{epoch:04d}"
    weights = {f"generator.{k}": v for k, v in gen.state_dict().items()}
    weights.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    save_tensors(f"{stem}.safetensors", weights, {"format": "caloforge-checkpoint",
                                                  "epoch": str(epoch)})
    tg, mg = optimizer_to_tensors(opt_g, "optG")
    td, md = optimizer_to_tensors(opt_d, "optD")
    extra = {**tg, **td}
    for r, (noise_state, torch_state, cuda_state) in enumerate(rng_states):
        extra[f"rng.noise.{r}"] = noise_state
        extra[f"rng.torch.{r}"] = torch_state
        if cuda_state is not None:
            extra[f"rng.cuda.{r}"] = cuda_state
    save_tensors(f"{stem}.state.safetensors", extra)
    np_state = np.random.get_state()
    state = {
        "format": "caloforge-checkpoint", "epoch": epoch, "config": cfg.to_json(),
        "optimizers": {"G": mg, "D": md},
        "rng": {"python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]},
        "data_statistics": stats, "history": history, "best_epoch": best_epoch,
        "best_metric": best_metric, "wall_seconds": wall, "world_size": world,
        "data_fingerprint": resume.data_fingerprint(cfg.data),
        "energy_range_gev": list(e_range), "hardware": hardware_summary(),
    }
    write_json(f"{stem}.json", state)
    # drop old checkpoints (generators/ keeps every epoch's generator)
    olds = sorted(_ckpt_dir(out).glob("epoch-*.json"))[:-max(1, cfg.keep_checkpoints)]
    for js in olds:
        s = js.with_suffix("")
        for p in (js, Path(f"{s}.safetensors"), Path(f"{s}.state.safetensors")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def hardware_summary() -> str:
    """One line: CPU model and cores, or the CUDA device."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    s = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        s += f", CUDA {torch.cuda.get_device_name(0)}"
    return s
