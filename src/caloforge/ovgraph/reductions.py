"""Sums over inner axes as matrix products (exact to float rounding), applied before compiling.

Why (the ``phase`` generator's per-layer rescaling, ``docs/runtime.md``): each of its three
passes sums the 25 x 25 cells of every layer, a ``ReduceSum`` over axes (1, 2) of a (B, 25, 25,
25) tensor with the layer axis innermost. The CPU plugin's reduction kernel took 0.18 ms per
pass for a batch of 32 (2 MB read: ~11 GB/s); the same sum as ``ones(1, 625) @ x.reshape(B,
625, 25)`` runs as a GEMM at 0.04 ms (measured in one process, 1 thread, same inputs).

:func:`sums_as_matmul` rewrites every float ``ReduceSum`` over a run of consecutive axes that
are neither the batch axis nor the innermost one (the case measured) and that sums at least
:data:`MIN_NUMBERS` numbers per sample. Only the order of the additions changes.

It runs on the model about to be compiled, *after* INT8 quantization: NNCF would otherwise
quantize the new MatMul like a layer (8-bit layer sums). Under a bf16 hint the product would
run in bf16, so the backend applies it only to f32-hinted compiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from caloforge.ovgraph.dense import _const

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

#: Smallest input (numbers per sample) rewritten: below it the reduction is not worth a GEMM.
MIN_NUMBERS = 4096


def _plan(node: ov.Node) -> tuple[int, int, int, list[int]] | None:
    """(P, K, Q, output sample dims) of a ReduceSum summing K numbers between P outer and Q > 1
    inner numbers per sample, or None."""
    if node.get_type_name() != "ReduceSum" or node.get_output_element_type(0).get_type_name() \
            != "f32":
        return None
    axes = _const(node.input_value(1).get_node())
    ps, out = node.get_input_partial_shape(0), node.get_output_partial_shape(0)
    if axes is None or ps.rank.is_dynamic or out.rank.is_dynamic:
        return None
    rank = ps.rank.get_length()
    dims = list(ps)[1:]
    if rank < 3 or any(d.is_dynamic for d in dims) or any(d.is_dynamic for d in list(out)[1:]):
        return None
    a = sorted({int(v) % rank for v in np.asarray(axes).reshape(-1)})
    if not a or a[0] == 0 or a != list(range(a[0], a[-1] + 1)) or a[-1] == rank - 1:
        return None
    size = [d.get_length() for d in dims]
    p = int(np.prod(size[:a[0] - 1]))
    k = int(np.prod(size[a[0] - 1:a[-1]]))
    q = int(np.prod(size[a[-1]:]))
    if p * k * q < MIN_NUMBERS or k < 2:
        return None
    return p, k, q, [d.get_length() for d in list(out)[1:]]


def sums_as_matmul(model: ov.Model) -> list[str]:
    """Replace each qualifying ``ReduceSum`` (module docstring) by ``Reshape -> MatMul(ones) ->
    Reshape``, in place; returns the names of the sums replaced."""
    import openvino.opset13 as ops

    done = []
    for node in model.get_ordered_ops():
        plan = _plan(node)
        if plan is None:
            continue
        p, k, q, out = plan
        x = ops.reshape(node.input_value(0), ops.constant(np.array([0, p, k, q], np.int64)), True)
        y = ops.matmul(ops.constant(np.ones((1, k), np.float32)), x, False, False)
        y = ops.reshape(y, ops.constant(np.array([0, *out], np.int64)), True)
        y.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(y.output(0))
        done.append(node.get_friendly_name())
    if done:
        model.validate_nodes_and_infer_types()
    return done


__all__ = ["MIN_NUMBERS", "sums_as_matmul"]
