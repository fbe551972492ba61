"""Training of the GAN generator/discriminator (``caloforge train`` wraps :func:`train`).

:func:`train` runs the steps every architecture shares -- check the options, open or resume the
run directory, stream the data, run epochs, re-estimate BatchNorm statistics, validate, write
generator files and checkpoints -- and leaves the iteration itself to the architecture's
*stepper* (:mod:`caloforge.gan.steps`): the reference 3DGAN recipe (svalleco/3Dgan energy-only)
or the ``phase`` recipe of the co-designed architecture (:mod:`caloforge.gan.phase`).

Checkpoints every epoch (safetensors + JSON, atomic; :mod:`caloforge.gan.checkpoint`); ``resume``
continues exactly. Multi-process: launched by ``torchrun`` (``WORLD_SIZE`` > 1) the models are
wrapped in DistributedDataParallel (gloo on CPU, nccl on CUDA) and the HDF5 stream is sharded.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caloforge.atomic import write_json, write_text
from caloforge.errors import UserError
from caloforge.gan import resume, rundir
from caloforge.gan.checkpoint import generator_state_from, load_tensors, save_generator
from caloforge.gan.data import CELL_THRESHOLD_GEV, ShowerStream, data_statistics, energy_range_of
from caloforge.gan.layers import build_library
from caloforge.gan.phase_stats import layer_occupancy_coefficients, phase_statistics
from caloforge.gan.rundir import hardware_summary, latest_checkpoint
from caloforge.gan.steps import (
    ARCHITECTURES,
    PhaseStepper,
    ReferenceStepper,
    Stepper,
    sampling_fraction,
)
from caloforge.gan.validation import Validator

__all__ = ["ARCHITECTURES", "TrainConfig", "TrainResult", "Validator", "hardware_summary",
           "latest_checkpoint", "sampling_fraction", "train"]

#: Config fields that must not change when a run is resumed.
_FROZEN = ("data", "batch_size", "seed", "image_scale", "max_events", "block_events",
           "optimizer", "aux_groups", "shower_prior", "architecture")
_BAR_KEYS = ("d_real", "d_fake", "g_bce", "g_ecal", "g_aux_profile", "d_loss", "g_adv", "g_mean",
             "g_width")


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
    architecture: str = "3dgan"         # "3dgan" (reference) or "phase" (caloforge.gan.phase)
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
    adv_weight: float = 0.3             # phase: weight of the adversarial generator loss
    r1_gamma: float = 10.0               # phase: R1 penalty on real inputs (Mescheder et al. 2018)
    grad_clip: float = 10.0             # phase: generator gradient-norm clip (0 = off)
    ring_weight: float = 1.0            # phase: relative weight of the transverse ring-shape loss
    sparse_head: bool = True            # phase: occupancy and energy per cell apart (gan.sparse)
    layer_occupancy: bool = True        # phase, sparse + library: hits follow the layer energy
    spectrum_weight: float = 3.0        # phase: relative weight of the cell-spectrum loss
    joint_weight: float = 0.0           # phase: relative weight of the joint hits/size loss
    layer_energies: bool = True         # phase: layer energies from an MC library (gan.layers)
    layer_library: str | None = None    # phase: MC file of that library (None: the training data)
    init_generator: str | None = None   # phase: start from these generator weights (fresh run)
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
        d.setdefault("architecture", "3dgan")  # runs started before the choice existed
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


def _bn_recalibrated(st: Stepper, e_range: tuple[float, float], batches: int, batch: int,
                     seed: int) -> torch.nn.Module:
    """Copy of the generator (eval mode) whose BatchNorm statistics are re-estimated exactly for
    the current weights (cumulative average over ``batches`` batches at uniform energies); a
    plain eval-mode copy for an architecture without BatchNorm."""
    g = copy.deepcopy(st.gen)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return g.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    lo, hi = e_range
    gen_rng = torch.Generator(device="cpu").manual_seed(seed)
    g.train()
    forward = st.forward_scaled(g)
    with torch.no_grad():
        for _ in range(batches):
            z = torch.randn(batch, st.latent_dim, generator=gen_rng).to(st.device)
            e = (lo + (hi - lo) * torch.rand(batch, generator=gen_rng)).to(st.device)
            forward(z, e)
    for m in bns:
        m.momentum = 0.01
    return g.eval()


def _check_config(cfg: TrainConfig) -> torch.device:
    """Validate the options that do not need the data; returns this rank's device."""
    resume.check_values(cfg)
    if cfg.architecture not in ARCHITECTURES:
        raise UserError(f"architecture {cfg.architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    if cfg.device not in ("cpu", "cuda"):
        raise UserError(f"device {cfg.device!r}: choose cpu or cuda")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda: no CUDA device is available")
    if cfg.bf16 and cfg.device == "cpu" and not torch.backends.mkldnn.is_available():
        raise UserError("bf16: this PyTorch build has no oneDNN (mkldnn) CPU support")
    for name in ("epochs", "batch_size", "gen_steps", "adv_every", "aux_groups"):
        if int(getattr(cfg, name)) < 1:
            raise UserError(f"{name}: must be >= 1")
    _, _, local = _dist_info()
    return torch.device(f"cuda:{local}" if cfg.device == "cuda" else "cpu")


def _open_run(cfg: TrainConfig, out: Path, rank: int, world: int) -> tuple[int, dict[str, Any]] | None:
    """Create the run directory; the newest complete checkpoint when resuming (checked against
    the config), ``None`` for a fresh run."""
    if cfg.resume:
        resume.require_run(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        rundir.ckpt_dir(out).mkdir(exist_ok=True)
        (out / "generators").mkdir(exist_ok=True)
    found = resume.find_checkpoint(out, (lambda m: rundir.log(out, m)) if rank == 0 else None)
    if found is not None and not cfg.resume:
        raise UserError(f"{out}: holds checkpoints up to epoch {found[0]}; pass --resume "
                        "(resume=True) to continue or choose another output directory")
    if cfg.resume and found is not None:
        resume.check_resume(out, found, cfg, world, _FROZEN)
    return found


def _make_stepper(cfg: TrainConfig, device: torch.device, noise: torch.Generator,
                  e_range: tuple[float, float], found: tuple[int, dict[str, Any]] | None
                  ) -> tuple[Stepper, dict[str, Any]]:
    """The architecture's stepper (fresh weights, data-derived buffers on a fresh run) and the
    JSON data statistics stored in the checkpoints."""
    prior: Any = None
    if cfg.architecture == "phase":
        stats: dict[str, Any] = found[1]["data_statistics"] if found else {"architecture": "phase"}
        if found is None:
            # a separate library file (simulated equally in ln E) also feeds the prior
            prior = phase_statistics(cfg.data, max(1, min(4000, cfg.max_events or 4000)),
                                     cfg.layer_library if cfg.layer_energies else None)
            stats["layer_library"] = None
            stats["sparse_head"] = cfg.sparse_head
            stats["layer_occupancy"] = False
            if cfg.layer_energies:
                lib = build_library(cfg.layer_library or cfg.data, CELL_THRESHOLD_GEV)
                prior["layer_library"] = lib
                stats["layer_library"] = list(lib["table"].shape[:2])
                if cfg.sparse_head and cfg.layer_occupancy:
                    stats["layer_occupancy"] = True
                    prior["occ_layer"], prior["occ_global"] = layer_occupancy_coefficients(
                        prior, lib)
            if cfg.init_generator:
                prior["init_state"] = generator_state_from(
                    load_tensors(cfg.init_generator, "generator weights file (safetensors)"))
        torch.manual_seed(cfg.seed)
        return PhaseStepper(cfg, device, noise, e_range, stats, prior), stats
    if found is not None:
        stats = found[1]["data_statistics"]
    else:
        stats = data_statistics(cfg.data, cfg.image_scale)
        prior = stats.pop("prior")
    torch.manual_seed(cfg.seed)
    return ReferenceStepper(cfg, device, noise, e_range, stats, prior), stats


def _run_epoch(cfg: TrainConfig, st: Stepper, stream: ShowerStream, epoch: int, rank: int,
               world: int, out: Path) -> dict[str, Any]:
    """One epoch of iterations; returns the epoch's row (mean logs, samples/s)."""
    st.set_lr(epoch)
    st.gen.train()
    st.disc.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    B = cfg.batch_size
    t0 = time.perf_counter()
    bar = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=stream.batches_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", leave=False, dynamic_ncols=True)
    for it, (img_np, e_np) in enumerate(stream.epoch_batches(epoch)):
        real = torch.from_numpy(img_np).to(st.device)
        e_real = torch.from_numpy(e_np).float().to(st.device)
        try:
            logs = st.step(real, e_real, it)
        except FloatingPointError as exc:
            raise UserError(f"{out}: {exc} at epoch {epoch}, batch {it}; lower the learning "
                            "rate or check the data") from None
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        if cfg.log_every and rank == 0 and (it + 1) % cfg.log_every == 0:
            run_means = " ".join(f"{k}={sums[k] / counts[k]:.4g}" for k in sums)
            rate = (it + 1) * B * world / (time.perf_counter() - t0)
            rundir.log(out, f"epoch {epoch} batch {it + 1}/{stream.batches_per_epoch} "
                      f"{rate:.3g} samples/s {run_means}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in _BAR_KEYS})
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t0
    row: dict[str, Any] = {"epoch": epoch, "train_seconds": train_s,
                           "samples_per_s": stream.batches_per_epoch * B * world / train_s,
                           "lr": cfg.lr * cfg.lr_decay ** (epoch - 1)}
    row.update({k: sums[k] / counts[k] for k in sums})
    return row


@dataclass
class _RunState:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_metric: float | None = None
    start_epoch: int = 1
    wall_before: float = 0.0


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume) a run; returns a :class:`TrainResult`. See the module doc."""
    cfg = config
    t_start = time.perf_counter()
    rank, world, _ = _dist_info()
    distributed = world > 1
    device = _check_config(cfg)
    if cfg.device == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cfg.device == "cuda" else "gloo")
    out = Path(cfg.output)
    found = _open_run(cfg, out, rank, world)
    data_path = Path(cfg.data)
    e_range = energy_range_of(data_path, cfg.max_events)
    # the phase models work in GeV (their transform is inside the model)
    scale = cfg.image_scale if cfg.architecture == "3dgan" else 1.0
    stream = ShowerStream(data_path, cfg.batch_size, cfg.seed, scale, rank, world,
                          cfg.block_events, cfg.max_events)
    noise = torch.Generator(device="cpu")
    noise.manual_seed(int(np.random.SeedSequence([cfg.seed, rank]).generate_state(1)[0]))
    st, stats = _make_stepper(cfg, device, noise, e_range, found)
    st.finish_setup()
    validator = (Validator(cfg.validation, cfg.validation_events, cfg.seed + 7919)
                 if cfg.validation and rank == 0 else None)
    torch.manual_seed(int(np.random.SeedSequence([cfg.seed, rank, 1]).generate_state(1)[0]))
    run = _RunState()
    if found is not None and cfg.resume:
        state = rundir.restore(out, found, st, rank, device)
        run.history = state.get("history", [])
        run.best_epoch, run.best_metric = state.get("best_epoch"), state.get("best_metric")
        run.start_epoch = found[0] + 1
        run.wall_before = float(state.get("wall_seconds", 0.0))
    if distributed:
        st.wrap_ddp()
    epochs_done = run.start_epoch - 1
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        row = _run_epoch(cfg, st, stream, epoch, rank, world, out)
        rng_states = [(noise.get_state(), torch.get_rng_state(),
                       torch.cuda.get_rng_state(device) if device.type == "cuda" else None)]
        if distributed:
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        if rank == 0:
            row["wall_seconds"] = run.wall_before + time.perf_counter() - t_start
            _end_epoch(cfg, out, st, validator, row, run, rng_states, stats, world, e_range)
        epochs_done = epoch
        if distributed:
            torch.distributed.barrier()
    wall = run.wall_before + time.perf_counter() - t_start
    return TrainResult(out, epochs_done, run.best_epoch, run.best_metric, run.history, wall)


def _end_epoch(cfg: TrainConfig, out: Path, st: Stepper, validator: Validator | None,
               row: dict[str, Any], run: _RunState, rng_states: list[Any], stats: dict[str, Any],
               world: int, e_range: tuple[float, float]) -> None:
    """Rank 0 after an epoch: BN re-estimation, validation, generator files, checkpoint, logs.

    The best epoch is the lowest 3DGAN metric for the reference architecture and the lowest
    feature score (:mod:`caloforge.gan.validation`) for ``phase``."""
    g_eval = _bn_recalibrated(st, e_range, cfg.bn_recalibration_batches,
                              cfg.bn_recalibration_batch, cfg.seed + 104729)
    if validator is not None:
        tv = time.perf_counter()
        row.update({f"val_{k}": v for k, v in validator(g_eval, st.device).items()})
        row["val_seconds"] = time.perf_counter() - tv
    run.history.append(row)
    epoch = int(row["epoch"])
    gmeta = {"epoch": epoch, "energy_range_gev": list(e_range), "architecture": cfg.architecture,
             "val_metric": row.get("val_metric"), "val_score": row.get("val_score"),
             "config": cfg.to_json()}
    save_generator(g_eval, out / "generators" / f"epoch-{epoch:04d}.safetensors", gmeta)
    m = row.get("val_score" if cfg.architecture == "phase" else "val_metric")
    if m is not None and (run.best_metric is None or m < run.best_metric):
        run.best_metric, run.best_epoch = float(m), epoch
        save_generator(g_eval, out / "best.safetensors", gmeta)
        write_json(out / "best.json", {"epoch": epoch, "metric": m, "row": row})
    rundir.save_checkpoint(out, epoch, cfg, st, rng_states, stats, run, world, e_range)
    write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in run.history))
    rundir.log(out, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()))
