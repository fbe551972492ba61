"""INT8 / FP32 showers/s of the ``phase`` generator against the shipped reference 3DGAN, in one
run (issue 15: "fidelity costs no speed").

    python benchmarks/bench_phase_speed.py [--weights phase.safetensors] [--rounds 5]
        [--seconds 0.5] [--batch 32 [1 ...]] [--profile] [--out benchmarks/results]

Times, in rotation (every configuration compiled once, warmed up, then round 1: A, B, C, ...;
round 2: A, B, C, ...; medians with min/max), the engine (``gen.run``, as ``caloforge bench``)
of: the reference (the shipped model), the phase generator exported with ONNX ConvTranspose
(``phase-deconv``, as exported before the sub-pixel form) and as exported now (``phase``, sub-pixel
upsampling), each at FP32 and INT8 (NNCF, the runtime's default calibration) in the layouts
1x1, 1xC and Cx1 (C = usable cores) at each ``--batch``. Prints the CPU, its AVX-512/AMX flags and the load, the
ratios phase / reference per precision (best layout of each), the cost of drawing the latent
noise per shower, and with ``--profile`` the slowest layers of each INT8/FP32 model (1 thread).
``--without-network`` also times ``phase-tail``: the same generator with its network's output
replaced by the last layer's bias plus the energy prior (dense layer and convolutions gone, the
whole tail after them kept: library draw, count rule, rescaling, cell noise): the ceiling that no
cheaper network can pass. Its showers are not the model's; only its speed means something.
Without ``--weights`` an untrained phase generator (seeded) is timed: speed does not depend on
the weights' values (``--layer-library``: with the layer-energy sampler and the per-layer
rescaling of :mod:`caloforge.gan.layers`; ``--sparse``: the sparse head). The reference is the package's trained 3DGAN (its
``default/`` while that is the 3DGAN, else ``reference/``), or ``--reference``. Writes ``bench_phase_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def _phase_generator(weights: str | None, layer_library: bool, sparse: bool):  # torch module
    import torch

    if weights:
        from caloforge.gan.checkpoint import load_generator

        return load_generator(weights).eval()
    from caloforge.gan.layers import LIBRARY_ENTRIES, LIBRARY_KNOTS
    from caloforge.gan.phase import PhaseGenerator

    torch.manual_seed(0)
    g = PhaseGenerator(layer_library=(LIBRARY_KNOTS, LIBRARY_ENTRIES) if layer_library else None,
                       sparse=sparse)
    if g.layers is not None:
        g.layers.table.fill_(0.9 / 25)  # some energy in every layer: the rescaling runs
    return g.eval()


def _without_network(g):  # torch module -> torch module
    """A copy of ``g`` whose network output is the last layer's bias plus the energy prior."""
    import copy
    import types

    from caloforge.gan.phase import _conditions

    tail = copy.deepcopy(g)
    bias = tail.up2.bias.detach().reshape(1, -1, 1, 1, 1).clone()

    def network(self, z, energy):
        return bias + self.prior_image(_conditions(energy)[:, :1])

    tail._network = types.MethodType(network, tail)
    return tail


def _reference_3dgan() -> str:
    from caloforge.gan.shipped import ONNX_NAME, reference_3dgan_dir

    d = reference_3dgan_dir()
    if d is None:
        raise SystemExit("no trained 3DGAN in the package: pass --reference")
    return str(d / ONNX_NAME)


def _architecture(path: str | None) -> str:
    from caloforge.runtime import load_model

    return str(load_model(path).architecture)


def _noise_rate(latent_dim: int, n: int = 4096) -> float:
    from caloforge.runtime.noise import latent_noise

    latent_noise(0, 0, 1024, latent_dim)
    t0 = time.perf_counter()
    latent_noise(1, 0, n, latent_dim)
    return n / (time.perf_counter() - t0)


def _profile(models: dict[str, str | None], batch: int) -> dict[str, list[dict]]:
    from caloforge.runtime import ExecConfig, get_backend

    out = {}
    for label, path in models.items():
        for precision in ("fp32", "int8"):
            gen = get_backend("openvino").compile(path, precision, ExecConfig(1, 1, batch),
                                                  perf_count=True)
            rows = gen.profile(batches=10)
            total = sum(r["time_ms"] for r in rows)
            out[f"{label}-{precision}"] = rows[:10]
            print(f"-- {label} {precision}: {total:.1f} ms per batch of {batch} (1 thread, sum "
                  "of the layers)")
            for r in rows[:6]:
                print(f"   {r['time_ms']:7.2f} ms {100 * r['time_ms'] / total:5.1f}%  "
                      f"{r['type']:<24} {r['kernel']:<22} {r['name'][:50]}")
            gen.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="phase generator weights (.safetensors); default: untrained")
    ap.add_argument("--layer-library", action="store_true",
                    help="untrained generator with the layer-energy sampler and rescaling")
    ap.add_argument("--sparse", action="store_true", help="untrained generator, sparse head")
    ap.add_argument("--reference", help="reference ONNX/IR (default: the package's trained 3DGAN, "
                    "caloforge.gan.shipped.reference_3dgan_dir)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="seconds per timed sample")
    ap.add_argument("--batch", type=int, nargs="+", default=[32])
    ap.add_argument("--profile", action="store_true", help="also print per-layer times")
    ap.add_argument("--without-network", action="store_true",
                    help="also time the generator with its network removed (the tail's ceiling)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="bench_phase_"))
    os.environ["CALOFORGE_CACHE"] = str(tmp / "cache")  # quantized once per model, this run

    from caloforge.atomic import write_json
    from caloforge.gan.export import export_onnx
    from caloforge.runtime import ExecConfig, get_backend
    from caloforge.runtime.bench import cpu_flags, cpu_name, layouts, time_in_rotation

    load = os.getloadavg()
    print(f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} usable cores; flags: "
          f"{' '.join(cpu_flags())}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    reference = args.reference or _reference_3dgan()
    g = _phase_generator(args.weights, args.layer_library, args.sparse)
    print(f"phase generator: {args.weights or 'untrained'}, latent {g.latent_dim}, layer sampler "
          f"{'yes' if getattr(g, 'layers', None) is not None else 'no'}, sparse head "
          f"{'yes' if getattr(g, 'sparse', False) else 'no'}; reference: "
          f"{reference} ({_architecture(reference)})")
    models: dict[str, str | None] = {
        "reference": reference,
        "phase-deconv": str(export_onnx(g, tmp / "phase_deconv.onnx", subpixel=False)),
        "phase": str(export_onnx(g, tmp / "phase.onnx")),
    }
    if args.without_network:
        models["phase-tail"] = str(export_onnx(_without_network(g), tmp / "phase_tail.onnx"))
    be = get_backend("openvino")
    gens = {}
    for label, path in models.items():
        for precision in ("fp32", "int8"):
            for s, t in layouts():
                for b in args.batch:
                    gen = be.compile(path, precision, ExecConfig(s, t, b))
                    gens[f"{label} {precision} {s}x{t} b{b}"] = gen
    print(f"compiled {len(gens)} configurations; timing {args.rounds} rounds in rotation ...")
    timings = time_in_rotation(gens, args.rounds, args.seconds)
    rows = {}
    for key, tm in timings.items():
        med = sorted(tm.samples)[len(tm.samples) // 2]
        rows[key] = {"median": med, "low": min(tm.samples), "high": max(tm.samples),
                     "samples": tm.samples}
        print(f"  {key:<30} {med:8.0f} showers/s  [{min(tm.samples):.0f}, "
              f"{max(tm.samples):.0f}]")
    best = {}
    for label in models:
        for precision in ("fp32", "int8"):
            cands = {k: v["median"] for k, v in rows.items()
                     if k.startswith(f"{label} {precision} ")}
            k = max(cands, key=lambda c: cands[c])
            best[f"{label} {precision}"] = {"layout": " ".join(k.split()[-2:]),
                                            "median": cands[k]}
    ratios = {}
    print("best layout and batch per model:")
    for precision in ("fp32", "int8"):
        ref = best[f"reference {precision}"]["median"]
        for label in models:
            b = best[f"{label} {precision}"]
            ratios[f"{label} {precision}"] = b["median"] / ref
            print(f"  {precision} {label:<13} {b['median']:7.0f} showers/s ({b['layout']:<7})  "
                  f"{b['median'] / ref:5.2f}x the reference")
    noise = {"reference": _noise_rate(200), "phase": _noise_rate(g.latent_dim)}
    print(f"latent noise alone (NumPy, 1 core): reference {noise['reference']:.0f}, phase "
          f"{noise['phase']:.0f} showers/s")
    profile = _profile(models, max(args.batch)) if args.profile else None
    load_end = os.getloadavg()
    print(f"load average at the end: {load_end[0]:.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench_phase_speed.json", {
        "cpu": cpu_name(), "isa_flags": cpu_flags(), "load_start": load, "load_end": load_end,
        "batch": args.batch, "rounds": args.rounds, "weights": args.weights,
        "without_network": args.without_network, "rows": rows,
        "best": best, "ratio_to_reference": ratios, "noise_showers_per_s": noise,
        "profile": profile})
    return 0


if __name__ == "__main__":
    sys.exit(main())
