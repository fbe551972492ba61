"""OpenVINO CPU backend: FP32 (forced f32), BF16 (small-channel convolutions padded), INT8
(NNCF post-training quantization), multistream execution with an AsyncInferQueue.

Precision handling
- ``fp32``: ``INFERENCE_PRECISION_HINT=f32``. OpenVINO's CPU plugin defaults to bf16 on CPUs
  with AMX/AVX512-BF16, so the hint is always set explicitly.
- ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``. On AMX the bf16 convolution kernel is wrong for
  the generator's first convolution (8 input channels, kernel depth 8; see
  ``shared/reference/cpu-inference.md``). Every convolution with fewer than
  :data:`BF16_MIN_CHANNELS` input channels gets its input zero-padded to that many channels
  (weights padded with zeros: the result is unchanged in exact arithmetic), which takes those
  layers off the faulty kernel. At compile time a parity check against f32 on a few events
  guards the result; a failure falls back to f32 with a warning (``info["fallback"]``).
- ``int8``: an NNCF-quantized model (FakeQuantize nodes; full INT8 by default, or a mixed model
  from the tuner, which is used as it is); the layers left in float run in f32.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caloforge.errors import UserError
from caloforge.runtime.backend import (
    IMAGE_SHAPE,
    CompiledGenerator,
    ExecConfig,
    ProgressFn,
    as_inputs,
    check_precision,
    register_backend,
)
from caloforge.runtime.modelfile import LoadedModel, is_quantized, read_ov_model
from caloforge.runtime.noise import latent_noise

BF16_MIN_CHANNELS = 16
BF16_PARITY_MAX_REL_L2 = 0.05  # measured ~0.007 on the shipped model; AMX bug gives ~0.95
_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
_CORE: Any = None
_CORE_LOCK = threading.Lock()


def core() -> Any:
    """The process-wide ``openvino.Core``."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


@dataclass(frozen=True)
class Calibration:
    """INT8 calibration inputs: ``samples`` events of latent noise x primary energies uniform in
    ``energy_range_gev`` (the trained range), drawn from ``seed``; NNCF ``preset`` and activation
    range estimator ``range_estimator`` (see :mod:`caloforge.quant.params`: ``minmax`` keeps the
    rare large activations of shower cores, NNCF's own ``mean_minmax`` clips them)."""

    samples: int = 200
    seed: int = 12345
    energy_range_gev: tuple[float, float] = (2.0, 500.0)
    preset: str = "performance"
    range_estimator: str = "minmax"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["energy_range_gev"] = list(self.energy_range_gev)
        return d


def calibration_inputs(cal: Calibration) -> list[dict[str, np.ndarray]]:
    z = latent_noise(cal.seed, 0, cal.samples)
    rng = np.random.default_rng([cal.seed, 7])
    lo, hi = cal.energy_range_gev
    e = rng.uniform(lo, hi, cal.samples).astype(np.float32)
    return [{"z": z[i:i + 1], "energy": e[i:i + 1]} for i in range(cal.samples)]


def optimize_model(model: Any) -> tuple[Any, list[str]]:
    """A copy of a float ``openvino.Model`` with the exact CPU rewrites applied
    (:func:`caloforge.runtime.graph_opt.fold_upsample_convolutions`); returns
    ``(model, rewritten layer names)``. Quantized models are returned unchanged."""
    from caloforge.runtime.graph_opt import (
        fold_dense_into_convolution,
        fold_upsample_convolutions,
    )

    if is_quantized(model):
        return model, []
    model = model.clone()
    done = fold_upsample_convolutions(model)
    done += fold_dense_into_convolution(model)
    return model, done


def quantize_int8(model: Any, calibration: Calibration | None = None,
                  ignored_scope: Any = None, optimize: bool = True, **nncf_options: Any) -> Any:
    """NNCF post-training quantization of an ``openvino.Model`` (or LoadedModel, or path);
    returns a new ``openvino.Model`` with FakeQuantize nodes. ``ignored_scope`` (an
    ``nncf.IgnoredScope``) keeps layers in float.
    ``optimize``: apply :func:`optimize_model` first (layer names of the two upsampled
    convolutions then end in ``/folded``: see ``optimize_model(model)[0]`` for the graph).

    Only the layers with INT8 kernels (convolutions, matrix products: their activation input
    and weights) are quantized; the quantizers NNCF also puts on the ``energy`` input, the
    shower-prior arithmetic (powers, divisions, products) and other elementwise ops are removed
    (the tuner's rule, :func:`caloforge.quant.build.apply_precisions`): 8 bits there cost 11%
    of the shower energy at 100 GeV and gain nothing (those ops have no INT8 kernel)."""
    import nncf

    if isinstance(model, LoadedModel):
        model = model.model
    elif model is None or isinstance(model, str | Path):
        model = read_ov_model(model, core()).model
    cal = calibration or Calibration()
    if optimize:
        model = optimize_model(model)[0]
    from caloforge.quant.params import nncf_arguments  # also quiets NNCF's logging

    kwargs: dict[str, Any] = {"subset_size": cal.samples,
                              **nncf_arguments({"preset": cal.preset, "range": cal.range_estimator}),
                              **nncf_options}
    if ignored_scope is not None:
        kwargs["ignored_scope"] = ignored_scope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(model, nncf.Dataset(calibration_inputs(cal)), **kwargs)
    from caloforge.quant.build import apply_precisions
    from caloforge.quant.config import INT8, Config
    from caloforge.quant.space import find_layers

    apply_precisions(quantized, Config.uniform([layer.name for layer in find_layers(model)], INT8))
    quantized.validate_nodes_and_infer_types()
    return quantized


def pad_small_convolutions(model: Any, min_channels: int = BF16_MIN_CHANNELS) -> list[str]:
    """Zero-pad the input channels of every float Convolution with fewer than
    ``min_channels`` input channels (in place). Returns the names of the padded layers."""
    import openvino.opset13 as ops

    padded = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        w_node = op.input_value(1).get_node()
        if w_node.get_type_name() != "Constant":
            continue  # quantized or compressed weights: leave alone
        w = w_node.get_data()
        cin = int(w.shape[1])
        if cin >= min_channels:
            continue
        extra = min_channels - cin
        pad_w = np.zeros((w.shape[0], extra, *w.shape[2:]), dtype=w.dtype)
        new_w = ops.constant(np.concatenate([w, pad_w], axis=1))
        rank = len(w.shape)
        x = op.input_value(0)
        zeros = np.zeros(rank, dtype=np.int64)
        ends = zeros.copy()
        ends[1] = extra
        px = ops.pad(x, ops.constant(zeros), ops.constant(ends), "constant",
                     ops.constant(np.array(0, dtype=np.float32)))
        op.input(0).replace_source_output(px.output(0))
        op.input(1).replace_source_output(new_w.output(0))
        padded.append(op.get_friendly_name())
    model.validate_nodes_and_infer_types()
    return padded


def runtime_precisions(compiled: Any) -> list[dict[str, str]]:
    """Per-layer runtime precision and kernel of a compiled model (convolutions, fully
    connected layers): ``[{"name", "type", "precision", "kernel"}]``."""
    rows = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        kind = rt["layerType"].astype(str)
        if kind in ("Convolution", "FullyConnected", "MatMul", "Deconvolution"):
            rows.append({"name": op.get_friendly_name(), "type": kind,
                         "precision": rt["runtimePrecision"].astype(str),
                         "kernel": rt["primitiveType"].astype(str)})
    return rows


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / den if den > 0 else float(np.linalg.norm(a))


class OpenVINOGenerator(CompiledGenerator):
    backend = "openvino"

    def __init__(self, compiled: Any, precision: str, config: ExecConfig,
                 info: dict[str, Any], ov_model: Any) -> None:
        self.compiled = compiled
        self.precision = precision
        self.config = config
        self.info = info
        self.ov_model = ov_model
        self._request: Any = None
        self._queue: Any = None
        self._lock = threading.Lock()

    def _pad(self, z: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = self.config.batch_size
        n = z.shape[0]
        if n == b:
            return z, e
        zp = np.zeros((b, z.shape[1]), dtype=np.float32)
        ep = np.full(b, 100.0, dtype=np.float32)
        zp[:n], ep[:n] = z, e
        return zp, ep

    def infer(self, z: np.ndarray, energy: np.ndarray) -> np.ndarray:
        z, energy = as_inputs(z, energy)
        b = self.config.batch_size
        if self._request is None:
            self._request = self.compiled.create_infer_request()
        out = np.empty((z.shape[0], *IMAGE_SHAPE), dtype=np.float32)
        for lo in range(0, z.shape[0], b):
            hi = min(lo + b, z.shape[0])
            zb, eb = self._pad(z[lo:hi], energy[lo:hi])
            res = self._request.infer({"z": zb, "energy": eb})
            out[lo:hi] = res[0][: hi - lo]
        return out

    def run(self, z: np.ndarray, energy: np.ndarray, out: np.ndarray | None = None,
            progress: ProgressFn | None = None) -> np.ndarray:
        import openvino as ov

        z, energy = as_inputs(z, energy)
        n = z.shape[0]
        if out is None:
            out = np.empty((n, *IMAGE_SHAPE), dtype=np.float32)
        b = self.config.batch_size
        if self.config.streams == 1 and n <= b:
            out[:] = self.infer(z, energy)
            if progress:
                progress(n)
            return out
        if self._queue is None:
            jobs = max(2, 2 * self.config.streams)
            self._queue = ov.AsyncInferQueue(self.compiled, jobs)
        errors: list[BaseException] = []

        def done(request: Any, span: tuple[int, int]) -> None:
            lo, hi = span
            try:
                out[lo:hi] = request.get_output_tensor(0).data[: hi - lo]
                if progress:
                    progress(hi - lo)
            except BaseException as exc:  # pragma: no cover - surfaced below
                errors.append(exc)

        with self._lock:
            self._queue.set_callback(done)
            for lo in range(0, n, b):
                hi = min(lo + b, n)
                zb, eb = self._pad(z[lo:hi], energy[lo:hi])
                self._queue.start_async({"z": zb, "energy": eb}, (lo, hi))
            self._queue.wait_all()
        if errors:
            raise errors[0]
        return out

    def profile(self, batches: int = 20) -> list[dict[str, Any]]:
        """Per-layer execution times (needs ``perf_count=True`` at compile): list of
        ``{name, type, kernel, precision, time_ms}`` averaged over ``batches`` runs, slowest
        first."""
        z = latent_noise(0, 0, self.config.batch_size)
        e = np.full(self.config.batch_size, 100.0, np.float32)
        req = self.compiled.create_infer_request()
        req.infer({"z": z, "energy": e})
        acc: dict[str, dict[str, Any]] = {}
        for _ in range(batches):
            req.infer({"z": z, "energy": e})
            for p in req.get_profiling_info():
                if str(p.status).endswith("NOT_RUN"):
                    continue
                row = acc.setdefault(p.node_name, {"name": p.node_name, "type": p.node_type,
                                                   "kernel": p.exec_type, "time_ms": 0.0})
                row["time_ms"] += p.real_time.total_seconds() * 1e3 / batches
        rows = sorted(acc.values(), key=lambda r: -r["time_ms"])
        return rows


class OpenVINOBackend:
    """OpenVINO CPU backend. ``compile(model, precision, config, calibration=..., perf_count=...,
    bf16_check=True, optimize=True)`` (``optimize``: exact graph rewrites, see
    :mod:`caloforge.runtime.graph_opt`); ``model``: path to .onnx / .xml, ``None`` (shipped), an
    ``openvino.Model`` or a :class:`LoadedModel`."""

    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def load(self, model: Any) -> LoadedModel:
        import openvino as ov

        if isinstance(model, LoadedModel):
            return model
        if isinstance(model, ov.Model):
            return LoadedModel(model=model, path=None,
                               precision="int8" if is_quantized(model) else "fp32")
        return read_ov_model(model, core())

    def compile(self, model: Any = None, precision: str = "fp32",
                config: ExecConfig | None = None, *, calibration: Calibration | None = None,
                perf_count: bool = False, bf16_check: bool = True,
                optimize: bool = True) -> OpenVINOGenerator:
        precision = check_precision(self, precision)
        config = config or ExecConfig()
        loaded = self.load(model)
        ov_model = loaded.model
        info: dict[str, Any] = {"model": str(loaded.path) if loaded.path else "<in memory>"}
        quantized = is_quantized(ov_model)
        if optimize and not quantized:
            ov_model, info["folded_layers"] = optimize_model(ov_model)
        if precision == "int8":
            if quantized:
                info["quantization"] = (loaded.manifest or {}).get("calibration") or "pre-quantized"
            else:
                cal = calibration or Calibration(
                    energy_range_gev=loaded.energy_range_gev or Calibration().energy_range_gev)
                ov_model = quantize_int8(ov_model, cal, optimize=False)
                info["quantization"] = cal.as_dict()
        elif quantized:
            raise UserError(
                f"{info['model']}: the model is quantized (INT8); compile it with precision int8"
            )
        ov_model = ov_model.clone()
        if precision == "bf16":
            info["bf16_padded_layers"] = pad_small_convolutions(ov_model)
        b = config.batch_size
        ov_model.reshape({"z": [b, 200], "energy": [b]})
        hint = _HINT[precision]
        if precision == "int8" and quantized:
            from caloforge.quant.build import precision_hint

            hint = precision_hint(ov_model)  # "bf16" only where the tuner kept BF16 layers
            info["precision_hint"] = hint
        compiled = self._compile(ov_model, hint, config, perf_count)
        if precision == "bf16" and bf16_check:
            err = self._parity(compiled, loaded.model, config)
            info["bf16_rel_l2_vs_f32"] = err
            if not err <= BF16_PARITY_MAX_REL_L2:
                warnings.warn(
                    f"bf16 output differs from f32 (rel. L2 {err:.3g} > "
                    f"{BF16_PARITY_MAX_REL_L2}): this CPU's bf16 kernels are unreliable for this "
                    "model; running in f32 instead", RuntimeWarning, stacklevel=2)
                compiled = self._compile(ov_model, "f32", config, perf_count)
                info["fallback"] = "f32"
        info["ov_streams"] = int(compiled.get_property("NUM_STREAMS"))
        info["ov_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        info["energy_range_gev"] = loaded.energy_range_gev
        gen = OpenVINOGenerator(compiled, precision, config, info, ov_model)
        gen.loaded = loaded  # type: ignore[attr-defined]
        return gen

    @staticmethod
    def _compile(ov_model: Any, hint: str, config: ExecConfig, perf_count: bool) -> Any:
        streams = int(config.streams)
        props = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
            "NUM_STREAMS": str(streams),
            "INFERENCE_NUM_THREADS": streams * config.resolved_threads(),
            "PERF_COUNT": "YES" if perf_count else "NO",
        }
        return core().compile_model(ov_model, "CPU", props)

    def _parity(self, compiled: Any, f32_model: Any, config: ExecConfig) -> float:
        n = min(8, config.batch_size)
        z = latent_noise(987, 0, n)
        e = np.linspace(10.0, 400.0, n).astype(np.float32)
        ref_model = f32_model.clone()
        ref_model.reshape({"z": [n, 200], "energy": [n]})
        ref = self._compile(ref_model, "f32", ExecConfig(1, 1, n), False)
        want = ref.create_infer_request().infer({"z": z, "energy": e})[0]
        zb = np.zeros((config.batch_size, 200), np.float32)
        eb = np.full(config.batch_size, 100.0, np.float32)
        zb[:n], eb[:n] = z, e
        got = compiled.create_infer_request().infer({"z": zb, "energy": eb})[0][:n]
        return _rel_l2(np.asarray(got), np.asarray(want))


register_backend("openvino", OpenVINOBackend)
