"""Exact rewrite of ``MatMul -> (affine, reshape) -> Convolution`` as one matrix product."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from caloforge.ovgraph.core import core

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

_AFFINE = frozenset({"Multiply", "Add", "Subtract", "Reshape", "Squeeze", "Unsqueeze"})


def _const(node: ov.Node) -> np.ndarray | None:
    return node.get_data() if node.get_type_name() == "Constant" else None


def constant_folding(model: ov.Model) -> None:
    """OpenVINO's constant folding pass, in place."""
    from openvino.passes import ConstantFolding, Manager

    mgr = Manager()
    mgr.register_pass(ConstantFolding())
    mgr.run_passes(model)


def _feeding_matmul(conv: ov.Node) -> ov.Node | None:
    """The MatMul that alone feeds ``conv``'s input through affine ops with constant side
    inputs, or None."""
    node = conv.input_value(0).get_node()
    while True:
        t = node.get_type_name()
        if t == "MatMul":
            return node
        if t not in _AFFINE:
            return None
        data = [node.input_value(i).get_node() for i in range(node.get_input_size())]
        non_const = [d for d in data if d.get_type_name() != "Constant"]
        if len(non_const) != 1 or (t == "Reshape" and node.input_value(0).get_node()
                                    is not non_const[0]):
            return None
        node = non_const[0]


def _probe(matmul: ov.Node, conv: ov.Node, src: ov.Output, n_in: int) -> np.ndarray:
    """The affine map from ``matmul``'s input to ``conv``'s output evaluated on the unit vectors
    and zero (one small f32 inference): (n_in + 1, n_out) float64."""
    import openvino as ov
    import openvino.opset13 as ops

    p = ops.parameter([n_in + 1, n_in], np.float32, name="fold_probe")
    matmul.input(0).replace_source_output(p.output(0))
    try:
        probe = ov.Model([conv.output(0)], [p], "fold_probe")
        compiled = core().compile_model(probe, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                      "INFERENCE_NUM_THREADS": 1})
        basis = np.vstack([np.eye(n_in, dtype=np.float32), np.zeros((1, n_in), np.float32)])
        out = np.asarray(compiled({"fold_probe": basis})[0], dtype=np.float64)
    finally:
        matmul.input(0).replace_source_output(src)
    return out.reshape(n_in + 1, -1)


def fold_dense_into_convolution(model: ov.Model, max_outputs: int = 1 << 16) -> list[str]:
    """Rewrite ``MatMul -> (affine, reshape) -> Convolution`` as one matrix product.

    In the generator the first convolution (8 input channels) reads the reshaped output of the
    dense layer; dense -> reshape -> conv1 is a single affine map from the 200 latent inputs to
    the conv1 output (64 x 7 x 7 x 8), evaluated here on the unit vectors (one small f32
    inference) and replaced by ``MatMul(x, A) + c`` and a reshape: 5 M multiply-adds per shower
    instead of 58 M, and no 8-channel convolution. Applied only when the convolution's input
    depends on the graph inputs through that MatMul alone and the map has at most
    ``max_outputs`` outputs. Returns the names of the removed convolutions.
    """
    import openvino.opset13 as ops

    constant_folding(model)
    done = []
    for conv in model.get_ordered_ops():
        if conv.get_type_name() != "Convolution" or _const(conv.input_value(1).get_node()) is None:
            continue
        matmul = _feeding_matmul(conv)
        if matmul is None or _const(matmul.input_value(1).get_node()) is None:
            continue
        src = matmul.input_value(0)
        ps = src.get_partial_shape()
        if ps.rank.get_length() != 2 or ps[1].is_dynamic:
            continue
        n_in = ps[1].get_length()
        out_shape = conv.get_output_partial_shape(0)
        if any(d.is_dynamic for d in list(out_shape)[1:]):
            continue
        dims = [d.get_length() for d in list(out_shape)[1:]]
        n_out = int(np.prod(dims))
        if n_out > max_outputs or n_out * n_in > (1 << 24):
            continue
        out = _probe(matmul, conv, src, n_in)
        c = out[n_in]
        a = out[:n_in] - c
        name = conv.get_friendly_name()
        y = ops.matmul(src, ops.constant(a.astype(np.float32)), False, False)
        y.set_friendly_name(name + "/dense_folded")
        y = ops.add(y, ops.constant(c.astype(np.float32)))
        y = ops.reshape(y, ops.constant(np.array([-1, *dims], np.int64)), False)
        y.set_friendly_name(name + "/dense_folded/reshape")
        conv.output(0).replace(y.output(0))
        done.append(name)
    model.validate_nodes_and_infer_types()
    return done
