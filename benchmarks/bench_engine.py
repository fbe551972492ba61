"""Inference engine benchmark (the same run as ``caloforge bench``), plus per-layer profiles.

    python benchmarks/bench_engine.py [--quick] [--out benchmarks/results] [--profile]
        [--threads 1] [--tuned tuned/model.xml]

The report ends with the to-disk rows: per precision (FP32, INT8), ``caloforge generate``'s
``generate_to_file`` with default options against the in-memory engine, both as marginal rates
from two run sizes (start-up cancels), and INT8 to disk / FP32 to disk (issue 12's targets).

Writes ``bench_engine.json``, ``bench_engine.png`` and, with ``--profile``, the OpenVINO
per-layer times and runtime precisions (``profile.json``) of FP32, BF16 and INT8 (and the tuned
model) at batch 32 with ``--threads`` threads. ``--tuned``: also time (and profile) a model
written by ``caloforge quantize``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def profile_layers(batch: int = 32, threads: int = 1, tuned: str | None = None) -> dict:
    from dataclasses import asdict

    from caloforge.ovgraph import runtime_precisions
    from caloforge.runtime import ExecConfig, get_backend

    ov = get_backend("openvino")
    out = {}
    models = [(p, None, p) for p in ("fp32", "bf16", "int8")]
    if tuned is not None:
        models.append(("tuned", tuned, "int8"))
    for label, model, p in models:
        gen = ov.compile(model, p, ExecConfig(1, threads, batch), perf_count=True)
        rows = gen.profile(batches=5)
        total = sum(r["time_ms"] for r in rows)
        out[label] = {"batch": batch, "threads": threads, "total_ms": total, "layers": rows[:12],
                      "runtime_precisions": [asdict(r) for r in runtime_precisions(gen.compiled)]}
        print(f"-- {label}: {total:.1f} ms per batch of {batch} ({threads} thread(s))")
        for r in rows[:8]:
            print(f"   {r['time_ms']:8.2f} ms {100 * r['time_ms'] / total:5.1f}%  "
                  f"{r['type']:<14} {r['kernel']:<26} {r['name']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--profile", action="store_true", help="also write per-layer profiles")
    ap.add_argument("--no-bench", action="store_true", help="profiles only")
    ap.add_argument("--threads", type=int, default=1, help="threads of the profiles (default 1)")
    ap.add_argument("--tuned", help="a tuned model (caloforge quantize's model.xml) to add")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from caloforge.atomic import write_json

    warnings.simplefilter("ignore")
    if args.profile:
        write_json(out / "profile.json", profile_layers(threads=args.threads, tuned=args.tuned))
    if not args.no_bench:
        from caloforge.workflows import format_table, plot, run_bench

        report = run_bench(args.quick, tuned=args.tuned,
                           log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
        print(format_table(report))
        write_json(out / "bench_engine.json", report.to_json())
        plot(report, out / "bench_engine.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
