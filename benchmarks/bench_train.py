"""Training throughput: real showers/s per full training iteration, reference 3DGAN vs ``phase``.

    python benchmarks/bench_train.py [--batch 32] [--repeats 3] [--threads 2]

Both architectures run their real training step (:mod:`caloforge.gan.steps`: optimizer steps,
losses, everything ``caloforge train`` does per batch) on the same MC showers (GFlash, uniform
2-500 GeV), in rotation so that load changes on a shared machine hit both alike; medians after
one warm-up. Rows:

* ``3dgan reference``: D on a real and a fake batch, then 2 generator steps (svalleco/3Dgan);
* ``3dgan shipped recipe``: the recipe of the previously shipped model (adversarial part every
  4th batch, profile loss) -- what the CPU run actually paid per shower;
* ``phase``: one D step and one G step with the feature-moment loss (the new default recipe).

Also prints multiply-adds per shower of each generator and discriminator forward pass (counted
with ``torch.utils.flop_counter``), the CPU and its flags.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from caloforge.data import ShowerWriter
from caloforge.gan.layers import build_library
from caloforge.gan.model import Discriminator, Generator
from caloforge.gan.phase import PhaseDiscriminator, PhaseGenerator
from caloforge.gan.phase_stats import layer_occupancy_coefficients, phase_statistics
from caloforge.gan.steps import RECIPE_DEFAULTS, PhaseStepper, ReferenceStepper
from caloforge.gan.train import TrainConfig
from caloforge.mc import simulate


def cpu_line() -> str:
    model, flags = platform.processor(), set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    wanted = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                          "amx_bf16") if f in flags]
    return f"{model}; {torch.get_num_threads()} threads; flags: {' '.join(wanted)}"


def macs(fn: object) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()  # type: ignore[operator]
    return fc.get_total_flops() / 2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(a.threads)
    b = a.batch
    rng = np.random.default_rng(0)
    energies = rng.uniform(2, 500, max(b, 256))
    images, energies = simulate(energies, seed=1)
    real_gev = torch.from_numpy(np.where(images >= 1e-6, images, 0).astype(np.float32))[:b]
    e = torch.from_numpy(energies).float()[:b]
    with tempfile.TemporaryDirectory() as tmp:  # the phase models' data-derived buffers
        with ShowerWriter(Path(tmp) / "mc.h5") as w:
            w.append(images, energies)
        prior = phase_statistics(Path(tmp) / "mc.h5", b)
        prior["layer_library"] = build_library(Path(tmp) / "mc.h5", 1e-6)
        prior["occ_layer"], prior["occ_global"] = layer_occupancy_coefficients(
            prior, prior["layer_library"])
    stats = {"sf_poly": [0.0, 0.0, 0.0, 0.02], "profile_mean_x": [1.0] * 25,
             "profile_mean_y": [1.0] * 25, "profile_mean_z": [1.0] * 25,
             "moment_scale": [1.0] * 6}

    def stepper(kind: str, **kw: object) -> object:
        cfg = TrainConfig(data="-", output="-", batch_size=b, optimizer="adam", lr=1e-4,
                          architecture="phase" if kind == "phase" else "3dgan", **kw)  # type: ignore[arg-type]
        noise = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        cls = PhaseStepper if kind == "phase" else ReferenceStepper
        # the phase recipe of the shipped model: layer-energy library, sparse head, coupling
        phase_stats = {"layer_library": list(prior["layer_library"]["table"].shape[:2]),
                       "sparse_head": True, "layer_occupancy": True}
        st = cls(cfg, torch.device("cpu"), noise, (2.0, 500.0),
                 phase_stats if kind == "phase" else stats, prior if kind == "phase" else None)
        st.finish_setup()
        return st

    steppers = {
        "3dgan reference": (stepper("3dgan"), real_gev * 100.0),
        "3dgan shipped recipe": (stepper("3dgan", adv_every=4, aux_weight=30.0,
                                         shower_prior=True), real_gev * 100.0),
        "phase": (stepper("phase", **{k: v for k, v in RECIPE_DEFAULTS["phase"].items()
                                      if k in ("aux_weight", "aux_groups", "lr_d", "betas")}),
                  real_gev),
    }
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for rep in range(a.repeats + 1):
        for name, (st, real) in steppers.items():
            n_it = 4 if "shipped" in name else 1  # a full adv_every cycle
            t0 = time.perf_counter()
            for it in range(n_it):
                st.step(real, e, it)  # type: ignore[attr-defined]
            dt = (time.perf_counter() - t0) / n_it
            if rep:
                times[name].append(dt)
    rates = {k: round(b / statistics.median(v), 2) for k, v in times.items()}
    ref = rates["3dgan reference"]
    gp = PhaseGenerator(layer_library=(64, 256), sparse=True).eval()
    z3, zp = torch.randn(1, 200), torch.randn(1, gp.latent_dim)
    e1 = torch.tensor([100.0])
    g3, d3, dp = Generator().eval(), Discriminator().eval(), PhaseDiscriminator().eval()
    with torch.no_grad():
        t, x, occ, _ = gp.fake_parts(zp, e1)
        feats = dp.features(x, occ, e1)
    out = {
        "cpu": cpu_line(),
        "batch": b,
        "real_showers_per_s_per_iteration": rates,
        "speed_up_vs_reference": {k: round(v / ref, 1) for k, v in rates.items()},
        "mega_macs_per_shower_forward": {
            "3dgan generator": round(macs(lambda: g3(z3, e1)) / 1e6, 1),
            "3dgan discriminator": round(macs(lambda: d3(torch.zeros(1, 25, 25, 25))) / 1e6, 1),
            "phase generator": round(macs(lambda: gp(zp, e1)) / 1e6, 1),
            "phase discriminator": round(macs(lambda: dp(t, feats, e1)) / 1e6, 1),
        },
        "parameters": {n: sum(p.numel() for p in m.parameters())
                       for n, m in (("3dgan generator", g3), ("3dgan discriminator", d3),
                                    ("phase generator", gp), ("phase discriminator", dp))},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
