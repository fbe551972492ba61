"""A training run's directory: checkpoints (write, find, restore), the log, the hardware line.

``RUN/checkpoints/epoch-K.{safetensors,state.safetensors,json}`` (see
:mod:`caloforge.gan.checkpoint` for the formats), ``RUN/train.log``. Used by
:func:`caloforge.gan.train.train`; every file is written atomically, the JSON last.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caloforge.atomic import write_json
from caloforge.gan import resume
from caloforge.gan.checkpoint import (
    apply_state,
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)
from caloforge.gan.steps import Stepper


def ckpt_dir(out: Path) -> Path:
    return out / "checkpoints"


def latest_checkpoint(out: Path) -> tuple[int, dict[str, Any]] | None:
    """(epoch, state JSON) of the newest complete checkpoint in run directory ``out``."""
    d = ckpt_dir(out)
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


def rng_tensor(state: torch.Tensor) -> torch.Tensor:
    return state.clone().to(torch.uint8)


# ----------------------------------------------------------------------------- training
def restore(out: Path, found: tuple[int, dict[str, Any]], st: Stepper, rank: int,
             device: torch.device) -> dict[str, Any]:
    """Load weights, optimizer and RNG states of checkpoint ``found``; returns its JSON."""
    epoch, state = found
    stem = ckpt_dir(out) / f"epoch-{epoch:04d}"
    weights = load_tensors(f"{stem}.safetensors", "checkpoint")
    apply_state(st.gen, {k[10:]: v for k, v in weights.items() if k.startswith("generator.")},
                f"{stem}.safetensors", "generator checkpoint")
    apply_state(st.disc, {k[14:]: v for k, v in weights.items() if k.startswith("discriminator.")},
                f"{stem}.safetensors", "discriminator checkpoint")
    extra = load_tensors(f"{stem}.state.safetensors", "checkpoint state")
    optimizer_from_tensors(st.opt_g, "optG", extra, state["optimizers"]["G"], f"{stem}.state.safetensors")
    optimizer_from_tensors(st.opt_d, "optD", extra, state["optimizers"]["D"], f"{stem}.state.safetensors")
    st.noise.set_state(rng_tensor(extra[f"rng.noise.{rank}"]))
    torch.set_rng_state(rng_tensor(extra[f"rng.torch.{rank}"]))
    if device.type == "cuda" and f"rng.cuda.{rank}" in extra:
        torch.cuda.set_rng_state(rng_tensor(extra[f"rng.cuda.{rank}"]), device)
    random.setstate(to_tuple(state["rng"]["python"]))
    np_state = state["rng"]["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    if rank == 0:
        log(out, f"resumed from epoch {epoch}")
    return state


def to_tuple(x: Any) -> Any:
    return tuple(to_tuple(v) for v in x) if isinstance(x, list) else x


def log(out: Path, msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    with open(out / "train.log", "a") as fh:
        fh.write(f"{stamp} {msg}\n")


def save_checkpoint(out: Path, epoch: int, cfg: Any, st: Stepper, rng_states: list[Any],
                    stats: dict[str, Any], run: Any, world: int,
                    e_range: tuple[float, float]) -> None:
    """Write checkpoint ``epoch`` (weights, optimizer + RNG tensors, then the JSON) atomically;
    ``cfg`` is the run's :class:`caloforge.gan.train.TrainConfig`, ``run`` its history and best
    epoch so far.

    With several processes, RNG states of every rank are gathered (each rank has its own noise
    stream); rank 0 writes.
    """
    gen, disc, opt_g, opt_d = st.gen, st.disc, st.opt_g, st.opt_d
    stem = ckpt_dir(out) / f"epoch-{epoch:04d}"
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
    np_state: Any = np.random.get_state()
    state = {
        "format": "caloforge-checkpoint", "epoch": epoch, "config": cfg.to_json(),
        "optimizers": {"G": mg, "D": md},
        "rng": {"python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]},
        "data_statistics": stats, "history": run.history, "best_epoch": run.best_epoch,
        "best_metric": run.best_metric, "wall_seconds": run.history[-1]["wall_seconds"],
        "world_size": world, "data_fingerprint": resume.data_fingerprint(cfg.data),
        "energy_range_gev": list(e_range), "hardware": hardware_summary(),
    }
    write_json(f"{stem}.json", state)
    # drop old checkpoints (generators/ keeps every epoch's generator)
    olds = sorted(ckpt_dir(out).glob("epoch-*.json"))[:-max(1, cfg.keep_checkpoints)]
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
