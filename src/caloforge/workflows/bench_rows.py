"""Typed results of the bench: rows, summary, MC rate, machine; JSON in and out."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

TUNED = "tuned"
"""Precision label of the rows of a tuned model (``caloforge quantize`` output)."""


@dataclass
class BenchRow:
    """One configuration's throughput, showers/s: median over the rounds, min, max."""

    runtime: str  # torch | openvino | openvino-plain
    precision: str  # fp32 | bf16 | int8 | tuned
    streams: int
    threads: int
    batch: int
    median: float
    low: float
    high: float
    samples: list[float] = field(default_factory=list)
    events_per_sample: int = 0
    vs_torch_fp32_best: float = math.nan
    vs_openvino_fp32_best: float = math.nan

    @property
    def key(self) -> str:
        return f"{self.runtime}-{self.precision} {self.streams}x{self.threads} b{self.batch}"

    @property
    def layout(self) -> str:
        return f"{self.streams}x{self.threads}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "key": self.key}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BenchRow:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})


def ratio(a: BenchRow | None, b: BenchRow | None) -> float:
    """``a.median / b.median`` (NaN when either is missing)."""
    if a is None or b is None or not b.median:
        return math.nan
    return a.median / b.median


def best(rows: list[BenchRow], **match: Any) -> BenchRow | None:
    """The fastest row whose attributes equal ``match`` (None if none does)."""
    sel = [r for r in rows if all(getattr(r, k) == v for k, v in match.items())]
    return max(sel, key=lambda r: r.median) if sel else None


@dataclass
class Multistream:
    """C streams x 1 thread vs 1 x 1 and 1 x C, one precision and batch."""

    precision: str
    batch: int
    one: float  # 1x1 showers/s
    multi: float  # Cx1
    wide: float  # 1xC
    cores: int

    @property
    def efficiency(self) -> float:
        return self.multi / (self.cores * self.one)

    @property
    def gain_vs_1xall(self) -> float:
        return self.multi / self.wide

    def to_json(self) -> dict[str, Any]:
        c = self.cores
        return {"precision": self.precision, "batch": self.batch, "1x1": self.one,
                f"{c}x1": self.multi, f"1x{c}": self.wide, "efficiency": self.efficiency,
                "gain_vs_1xall": self.gain_vs_1xall}


TARGETS = {"int8_vs_fp32": 4.0, "best_vs_torch": 12.0, "multistream_efficiency": 0.95}


@dataclass
class BenchSummary:
    """The targets: INT8 vs FP32 (best settings), best caloforge vs PyTorch eager (best),
    multistream scaling (C x 1 vs C x the 1x1 rate, and vs 1 x C)."""

    rows: list[BenchRow]
    cores: int

    def best(self, precision: str | None = None, runtime: str = "openvino",
             **match: Any) -> BenchRow | None:
        if precision is not None:
            match["precision"] = precision
        return best(self.rows, runtime=runtime, **match)

    @property
    def torch_fp32_best(self) -> BenchRow | None:
        return best(self.rows, runtime="torch")

    @property
    def best_caloforge(self) -> BenchRow | None:
        return best(self.rows, runtime="openvino")

    def vs_fp32(self, precision: str, runtime: str = "openvino") -> float:
        return ratio(self.best(precision, runtime), self.best("fp32"))

    def multistream(self) -> list[Multistream]:
        out = []
        c = self.cores
        for p in sorted({r.precision for r in self.rows if r.runtime == "openvino"}):
            for b in sorted({r.batch for r in self.rows}):
                one = self.best(p, batch=b, streams=1, threads=1)
                multi = self.best(p, batch=b, streams=c, threads=1)
                wide = self.best(p, batch=b, streams=1, threads=c)
                if c > 1 and one is not None and multi is not None and wide is not None:
                    out.append(Multistream(p, b, one.median, multi.median, wide.median, c))
        return out

    def to_json(self) -> dict[str, Any]:
        """The summary as ``bench.json`` has it (best rows in brief, ratios, targets)."""
        def brief(r: BenchRow | None) -> dict[str, Any]:
            if r is None:
                return {"key": "-", "median": math.nan, "low": None, "high": None}
            return {"key": r.key, "median": r.median, "low": r.low, "high": r.high}

        fp32, torch_best, top = self.best("fp32"), self.torch_fp32_best, self.best_caloforge
        plain_fp32 = self.best("fp32", "openvino-plain")
        plain_int8 = self.best("int8", "openvino-plain")
        out: dict[str, Any] = {
            "torch_fp32_best": brief(torch_best), "openvino_fp32_best": brief(fp32),
            "openvino_int8_best": brief(self.best("int8")), "best_caloforge": brief(top),
            "int8_vs_fp32": self.vs_fp32("int8"),
            "openvino_fp32_plain_best": brief(plain_fp32),
            "openvino_int8_plain_best": brief(plain_int8),
            "int8_vs_fp32_plain": ratio(self.best("int8"), plain_fp32),
            "plain_int8_vs_plain_fp32": ratio(plain_int8, plain_fp32),
            "rewrite_gain_fp32": ratio(fp32, plain_fp32),
            "best_vs_torch": ratio(top, torch_best),
            "openvino_fp32_vs_torch": ratio(fp32, torch_best),
            "targets": dict(TARGETS), "multistream": [m.to_json() for m in self.multistream()],
        }
        for label in (TUNED, "bf16"):
            if self.best(label) is not None:
                out[f"openvino_{label}_best"] = brief(self.best(label))
                out[f"{label}_vs_fp32"] = self.vs_fp32(label)
        return out


@dataclass
class McRate:
    """caloforge MC showers/s at ``energy_gev`` on one core (median of single-shower calls)."""

    energy_gev: float
    seconds_per_shower_median: float
    showers_per_s: float
    low: float
    high: float
    showers: int
    cores: int = 1


@dataclass
class EndToEnd:
    """``generate_to_file`` (default options: gzip 1 + shuffle, the model's threshold) against
    the in-memory engine (``gen.run``), same compiled model; both as marginal rates
    ``(n2 - n1) / (t2 - t1)`` from two run sizes, so that start-up cancels."""

    precision: str
    layout: str
    compression: str
    events: tuple[int, int]
    engine_showers_per_s: float
    to_disk_showers_per_s: float
    fraction_of_engine: float
    file_mb: float


@dataclass
class PhysicsRow:
    """One precision's showers at 100 GeV vs OpenVINO FP32 and vs an MC sample."""

    rel_l2_vs_openvino_fp32: float
    mean_total_energy_gev: float
    metric_vs_mc: float | None = None


@dataclass
class BenchReport:
    """Everything one bench run measured (``to_json``: ``bench.json``)."""

    machine: dict[str, Any]
    model: str
    tuned_model: str | None
    settings: dict[str, Any]
    rows: list[BenchRow]
    mc: McRate | None = None
    physics: dict[str, PhysicsRow] = field(default_factory=dict)
    physics_events: int = 0
    end_to_end: list[EndToEnd] = field(default_factory=list)

    @property
    def summary(self) -> BenchSummary:
        return BenchSummary(self.rows, int(self.machine["cores"]))

    def best(self, precision: str, streams: int | None = None, threads: int | None = None,
             runtime: str = "openvino") -> BenchRow | None:
        """The fastest row of a precision (optionally at a layout), or None."""
        match: dict[str, Any] = {"runtime": runtime, "precision": precision}
        if streams is not None:
            match["streams"] = streams
        if threads is not None:
            match["threads"] = threads
        return best(self.rows, **match)

    @property
    def best_vs_mc(self) -> float | None:
        top = self.summary.best_caloforge
        return None if self.mc is None or top is None else top.median / self.mc.showers_per_s

    def to_json(self) -> dict[str, Any]:
        summary = self.summary.to_json()
        if self.best_vs_mc is not None:
            summary["best_caloforge_vs_mc"] = self.best_vs_mc
        return {
            "machine": self.machine, "model": self.model, "tuned_model": self.tuned_model,
            "settings": self.settings, "results": [r.to_json() for r in self.rows],
            "summary": summary, "mc": None if self.mc is None else dataclasses.asdict(self.mc),
            "physics": {"events": self.physics_events, "energy_gev": 100.0,
                        "by_precision": {k: dataclasses.asdict(v) for k, v in self.physics.items()}},
            "generate_end_to_end": [dataclasses.asdict(g) for g in self.end_to_end],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BenchReport:
        phys = obj.get("physics") or {}
        return cls(
            machine=dict(obj["machine"]), model=obj.get("model", ""),
            tuned_model=obj.get("tuned_model"), settings=dict(obj.get("settings") or {}),
            rows=[BenchRow.from_json(r) for r in obj["results"]],
            mc=None if not obj.get("mc") else McRate(**obj["mc"]),
            physics={k: PhysicsRow(**v) for k, v in (phys.get("by_precision") or {}).items()},
            physics_events=int(phys.get("events") or 0),
            end_to_end=[EndToEnd(**{**g, "events": tuple(g["events"])})
                        for g in obj.get("generate_end_to_end") or []
                        if "to_disk_showers_per_s" in g])  # older files: other fields
