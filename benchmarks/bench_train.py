"""Training throughput of the 3DGAN pieces (showers/s), fp32 vs bf16 autocast, on this machine.

    python benchmarks/bench_train.py [--batch 32] [--repeats 3] [--threads 2]

Times (median of ``repeats``, after one warm-up) a generator step, a generator step through the
frozen discriminator, a discriminator step (weights updated), and a full reference iteration
(D real + D fake + 2 G steps) per real shower. Variants run in rotation so load changes on a
shared machine hit both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from caloforge.gan.model import Discriminator, Generator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    gen, disc = Generator(), Discriminator()
    b = a.batch
    z, e = torch.randn(b, 200), 2 + 498 * torch.rand(b)
    real = torch.rand(b, 25, 25, 25) * (torch.rand(b, 25, 25, 25) < 0.07) * 10

    def g_step() -> None:
        gen.forward_scaled(z, e).sum().backward()

    def gd_step() -> None:
        for p in disc.parameters():
            p.requires_grad_(False)
        p_, en, _ = disc(gen.forward_scaled(z, e)[:, 0])
        (p_.sum() + en.sum()).backward()
        for p in disc.parameters():
            p.requires_grad_(True)

    def d_step() -> None:
        p_, en, _ = disc(real)
        (p_.sum() + en.sum()).backward()

    def iteration() -> None:
        d_step()
        with torch.no_grad():
            fake = gen.forward_scaled(z, e)[:, 0]
        p_, en, _ = disc(fake)
        (p_.sum() + en.sum()).backward()
        gd_step()
        gd_step()

    cases = {"G step": g_step, "G+D(frozen) step": gd_step, "D step": d_step,
             "reference iteration (per real shower)": iteration}
    times: dict[str, list[float]] = {f"{k} [{p}]": [] for k in cases for p in ("fp32", "bf16")}
    for rep in range(a.repeats + 1):
        for name, fn in cases.items():
            for prec in ("fp32", "bf16"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    t0 = time.perf_counter()
                    fn()
                    dt = time.perf_counter() - t0
                if rep:
                    times[f"{name} [{prec}]"].append(dt)
    out = {k: round(b / statistics.median(v), 2) for k, v in times.items()}
    print(json.dumps({"batch": b, "threads": a.threads, "showers_per_s": out}, indent=2))


if __name__ == "__main__":
    main()
