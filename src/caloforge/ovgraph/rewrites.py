"""Exact graph rewrites that make the generator cheaper to run on CPUs (in place, float models).

:func:`fold_upsample_convolutions` — "nearest upsampling -> zero pad -> valid convolution"
(the 3DGAN generator does this twice) is rewritten as one convolution on the *low-resolution*
input followed by a depth-to-space shuffle. Nearest upsampling by ``s`` repeats each input cell
``s`` times, so an output cell ``o = s*q + r`` (phase ``r``) of the convolution only sees the
low-resolution cells ``q + floor((r + k - p)/s)`` for kernel taps ``k`` (``p`` the low-side zero
padding): summing the weights of taps that land on the same low-resolution cell gives, for
every phase, a small kernel on the low-resolution grid. All ``prod(s)`` phases become output
channels of a single convolution (``C_out * prod(s)`` channels), then a reshape/transpose
interleaves them back. Same function (up to float rounding of the pre-summed weights), about
3x fewer multiply-adds for both of the generator's upsampled convolutions, and wide
(48 / 72 channel) outputs instead of 6-channel ones that starve the vector units.

:func:`fold_dense_into_convolution` (dense -> reshape -> first convolution as one matrix
product) lives in :mod:`caloforge.ovgraph.dense`; :func:`pad_small_convolutions` (zero input
channels, for the bf16 kernels) and :func:`optimize_model` (all exact rewrites on a copy) here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from caloforge.ovgraph.core import is_quantized
from caloforge.ovgraph.dense import _const, constant_folding, fold_dense_into_convolution
from caloforge.ovgraph.moves import collapse_moves, gather_before_elementwise, int32_gather_indices
from caloforge.ovgraph.shuffle import fuse_depth_to_space, narrow_to_crops

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

BF16_MIN_CHANNELS = 16
"""Convolutions with fewer input channels are zero-padded to this many before a bf16 compile."""

REWRITES_VERSION = 3
"""Bump when :func:`optimize_model` changes the graph it makes (caches of quantized rewritten
models key on it). 2: sub-pixel convolutions narrowed to their crop, shuffles fused into
``DepthToSpace``. 3: channel selections moved ahead of elementwise ops and data-movement chains
collapsed into one ``Gather``, int32 Gather indices (:mod:`caloforge.ovgraph.moves`)."""


def _crop(ops: ModuleType, y: ov.Node, size: list[int]) -> ov.Node:
    return ops.slice(y, ops.constant(np.zeros(3, np.int64)), ops.constant(np.array(size, np.int64)),
                     ops.constant(np.ones(3, np.int64)), ops.constant(np.array([2, 3, 4], np.int64)))


def _only_consumer(node: ov.Node) -> ov.Node | None:
    targets = list(node.output(0).get_target_inputs())
    return targets[0].get_node() if len(targets) == 1 else None


def _valid_unit_conv(conv: ov.Node) -> bool:
    a = conv.get_attributes()
    return not (any(v != 1 for v in a["strides"]) or any(v != 1 for v in a["dilations"])
                or any(a["pads_begin"]) or any(a["pads_end"])
                or a["auto_pad"] not in ("explicit", "valid"))


def _float_weights(node: ov.Node) -> np.ndarray | None:
    w = _const(node.input_value(1).get_node())
    return w if w is not None and w.ndim == 5 and w.dtype == np.float32 else None


def _phase_chain(conv: ov.Node) -> tuple[np.ndarray, ov.Node, ov.Node] | None:
    """``conv -> Add(per-channel bias) -> PRelu(scalar)|Relu -> Convolution(valid, stride 1)``:
    returns (bias, activation node, next convolution) or None."""
    add = _only_consumer(conv)
    if add is None or add.get_type_name() != "Add":
        return None
    other = [add.input_value(i).get_node() for i in range(2)
             if add.input_value(i).get_node() is not conv]
    bias = _const(other[0]) if len(other) == 1 else None
    cout = conv.get_output_partial_shape(0)[1].get_length()
    if bias is None or bias.size != cout or bias.dtype != np.float32:
        return None
    act = _only_consumer(add)
    if act is None or act.get_type_name() not in ("PRelu", "Relu"):
        return None
    if act.get_type_name() == "PRelu":
        slope = _const(act.input_value(1).get_node())
        if slope is None or slope.size != 1:
            return None
    nxt = _only_consumer(act)
    if nxt is None or nxt.get_type_name() != "Convolution" or not _valid_unit_conv(nxt):
        return None
    if _float_weights(nxt) is None:
        return None
    return bias.reshape(-1).astype(np.float32), act, nxt


@dataclass
class _Match:
    """An ``Interpolate(nearest) [-> Pad(zeros)] -> Convolution`` found in the graph."""

    conv: ov.Node
    x: ov.Output  # the low-resolution input
    w: np.ndarray  # (cout, cin, K...) float32
    s: list[int]  # integer upsampling scales
    low: list[int]  # low-resolution spatial size L
    pl: list[int]  # zero padding before / after, per spatial axis
    ph: list[int]


def _pad_source(conv: ov.Node) -> tuple[ov.Node, np.ndarray, np.ndarray] | None:
    """(upsample node, low pads, high pads) in front of ``conv``, or None."""
    src = conv.input_value(0).get_node()
    zeros = np.zeros(5, dtype=np.int64)
    if src.get_type_name() != "Pad":
        return src, zeros, zeros
    if src.get_attributes().get("pad_mode") != "constant":
        return None
    pb, pe = _const(src.input_value(1).get_node()), _const(src.input_value(2).get_node())
    val = _const(src.input_value(3).get_node()) if src.get_input_size() > 3 else 0.0
    if pb is None or pe is None or val is None or float(np.asarray(val)) != 0.0:
        return None
    p_lo, p_hi = pb.astype(np.int64), pe.astype(np.int64)
    if p_lo[:2].any() or p_hi[:2].any() or (p_lo < 0).any() or (p_hi < 0).any():
        return None
    return src.input_value(0).get_node(), p_lo, p_hi


def _match(conv: ov.Node) -> _Match | None:
    if conv.get_type_name() != "Convolution" or not _valid_unit_conv(conv):
        return None
    w = _float_weights(conv)
    found = _pad_source(conv)
    if w is None or found is None:
        return None
    up, p_lo, p_hi = found
    if up.get_type_name() != "Interpolate":
        return None
    ia = up.get_attributes()
    if (ia.get("mode") != "nearest" or ia.get("coordinate_transformation_mode") != "asymmetric"
            or ia.get("nearest_mode") != "floor" or any(ia.get("pads_begin", [0]))
            or any(ia.get("pads_end", [0]))):
        return None
    x = up.input_value(0)
    xs, ys = x.get_partial_shape(), up.get_output_partial_shape(0)
    if xs.rank.get_length() != 5 or any(d.is_dynamic for d in list(xs)[1:]) or any(
            d.is_dynamic for d in list(ys)[1:]):
        return None
    low = [xs[i].get_length() for i in (2, 3, 4)]
    high = [ys[i].get_length() for i in (2, 3, 4)]
    if any(u % n for u, n in zip(high, low, strict=True)) or ys[1].get_length() != xs[1].get_length():
        return None
    return _Match(conv, x, w, [u // n for u, n in zip(high, low, strict=True)], low,
                  [int(v) for v in p_lo[2:]], [int(v) for v in p_hi[2:]])


def _phase_weights(w: np.ndarray, s: list[int], pl: list[int], P: list[int],
                   T: list[int]) -> np.ndarray:
    """Kernel of all ``prod(s)`` phases on the low-resolution grid: (R*cout, cin, T...)."""
    cout, cin = int(w.shape[0]), int(w.shape[1])
    K = list(w.shape[2:])
    wn = np.zeros((s[0] * s[1] * s[2] * cout, cin, *T), dtype=np.float64)
    w64 = w.astype(np.float64)
    for ph_i, (rx, ry, rz) in enumerate(np.ndindex(*s)):
        blk = wn[ph_i * cout:(ph_i + 1) * cout]
        for kx, ky, kz in np.ndindex(*K):
            dx = (rx + kx - pl[0]) // s[0] + P[0]
            dy = (ry + ky - pl[1]) // s[1] + P[1]
            dz = (rz + kz - pl[2]) // s[2] + P[2]
            blk[:, :, dx, dy, dz] += w64[:, :, kx, ky, kz]
    return wn


def _next_on_phases(ops: ModuleType, y: ov.Node, chain: tuple[np.ndarray, ov.Node, ov.Node],
                    s: list[int], cout: int, Q: list[int], n_out: list[int]
                    ) -> tuple[ov.Node, int, list[int], list[int]]:
    """bias -> activation -> next convolution, all on the phase layout; returns
    ``(y, next cout, next Q, next n_out)``."""
    bias, act, nxt = chain
    R = s[0] * s[1] * s[2]
    y = ops.add(y, ops.constant(np.tile(bias, R).reshape(1, R * cout, 1, 1, 1)))
    y = ops.prelu(y, act.input_value(1)) if act.get_type_name() == "PRelu" else ops.relu(y)
    w2 = _float_weights(nxt)
    assert w2 is not None  # checked by _phase_chain
    w2 = w2.astype(np.float64)
    c2 = int(w2.shape[0])
    K2 = list(w2.shape[2:])
    n_out2 = [n_out[i] - K2[i] + 1 for i in range(3)]
    T2 = [(s[i] - 1 + K2[i] - 1) // s[i] + 1 for i in range(3)]
    Q2 = [math.ceil(n_out2[i] / s[i]) for i in range(3)]
    H2 = [max(0, Q2[i] + T2[i] - 1 - Q[i]) for i in range(3)]
    if any(H2):
        y = ops.pad(y, ops.constant(np.zeros(5, np.int64)),
                    ops.constant(np.array([0, 0, *H2], np.int64)), "constant",
                    ops.constant(np.array(0, np.float32)))
    w2p = np.zeros((R * c2, R * cout, *T2), dtype=np.float64)
    for o_ph, (ox, oy, oz) in enumerate(np.ndindex(*s)):
        for kx, ky, kz in np.ndindex(*K2):
            jx, jy, jz = ox + kx, oy + ky, oz + kz
            i_ph = ((jx % s[0]) * s[1] + jy % s[1]) * s[2] + jz % s[2]
            w2p[o_ph * c2:(o_ph + 1) * c2, i_ph * cout:(i_ph + 1) * cout,
                jx // s[0], jy // s[1], jz // s[2]] += w2[:, :, kx, ky, kz]
    y = ops.convolution(y, ops.constant(w2p.astype(np.float32)), [1, 1, 1], [0, 0, 0],
                        [0, 0, 0], [1, 1, 1])
    y.set_friendly_name(nxt.get_friendly_name() + "/phase")
    return _crop(ops, y, Q2), c2, Q2, n_out2


def _rewrite(ops: ModuleType, m: _Match) -> list[str] | None:
    """Replace one match in the graph; returns the rewritten convolution names (None: no fit)."""
    s, L, pl, ph = m.s, m.low, m.pl, m.ph
    K = list(m.w.shape[2:])
    n_out = [s[i] * L[i] + pl[i] + ph[i] - K[i] + 1 for i in range(3)]
    if min(n_out) < 1:
        return None
    P = [math.ceil(pl[i] / s[i]) for i in range(3)]
    T = [max((r + K[i] - 1 - pl[i]) // s[i] for r in range(s[i])) + P[i] + 1 for i in range(3)]
    Q = [math.ceil(n_out[i] / s[i]) for i in range(3)]
    H = [max(0, Q[i] + T[i] - 1 - (L[i] + P[i])) for i in range(3)]
    xp = ops.pad(m.x, ops.constant(np.array([0, 0, *P], np.int64)),
                 ops.constant(np.array([0, 0, *H], np.int64)), "constant",
                 ops.constant(np.array(0, np.float32)))
    wn = _phase_weights(m.w, s, pl, P, T)
    y = ops.convolution(xp, ops.constant(wn.astype(np.float32)), [1, 1, 1], [0, 0, 0],
                        [0, 0, 0], [1, 1, 1])
    name = m.conv.get_friendly_name()
    y.set_friendly_name(name + "/folded")
    y = _crop(ops, y, Q)  # conv output spatial = L + P + H - T + 1 >= Q: keep the first Q
    done, target, cout = [], m.conv, int(m.w.shape[0])
    chain = _phase_chain(m.conv)
    if chain is not None:  # only the (narrow) output of the next convolution is interleaved
        y, cout, Q, n_out = _next_on_phases(ops, y, chain, s, cout, Q, n_out)
        done.append(name)
        target = chain[2]
        name = target.get_friendly_name()
    y = ops.reshape(y, ops.constant(np.array([0, *s, cout, *Q], np.int64)), True)
    y = ops.transpose(y, ops.constant(np.array([0, 4, 5, 1, 6, 2, 7, 3], np.int64)))
    y = ops.reshape(y, ops.constant(np.array(
        [0, cout, Q[0] * s[0], Q[1] * s[1], Q[2] * s[2]], np.int64)), True)
    if any(Q[i] * s[i] != n_out[i] for i in range(3)):
        y = _crop(ops, y, n_out)
    y.set_friendly_name(name + "/interleave")
    target.output(0).replace(y.output(0))
    done.append(name)
    return done


def fold_upsample_convolutions(model: ov.Model) -> list[str]:
    """Rewrite ``Interpolate(nearest, integer scales) [-> Pad(zeros)] -> Convolution(valid,
    stride 1)`` in place (float weights only). When that convolution is followed by a bias, a
    ReLU/LeakyReLU and another valid convolution (the generator's conv3 -> conv4), the next
    convolution is computed on the phase layout too and only its output is interleaved.
    Returns the names of the rewritten convolutions.
    """
    import openvino.opset13 as ops

    constant_folding(model)
    done: list[str] = []
    for conv in model.get_ordered_ops():
        m = _match(conv)
        if m is not None:
            done += _rewrite(ops, m) or []
    model.validate_nodes_and_infer_types()
    return done


def pad_small_convolutions(model: ov.Model, min_channels: int = BF16_MIN_CHANNELS) -> list[str]:
    """Zero-pad the input channels of every float Convolution with fewer than
    ``min_channels`` input channels (in place; exact: the padded weights are zero). Takes those
    layers off the faulty AMX bf16 kernel. Returns the names of the padded layers."""
    import openvino.opset13 as ops

    padded = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        w = _const(op.input_value(1).get_node())
        if w is None:
            continue  # quantized or compressed weights: leave alone
        cin = int(w.shape[1])
        if cin >= min_channels:
            continue
        extra = min_channels - cin
        pad_w = np.zeros((w.shape[0], extra, *w.shape[2:]), dtype=w.dtype)
        new_w = ops.constant(np.concatenate([w, pad_w], axis=1))
        zeros = np.zeros(len(w.shape), dtype=np.int64)
        ends = zeros.copy()
        ends[1] = extra
        px = ops.pad(op.input_value(0), ops.constant(zeros), ops.constant(ends), "constant",
                     ops.constant(np.array(0, dtype=np.float32)))
        op.input(0).replace_source_output(px.output(0))
        op.input(1).replace_source_output(new_w.output(0))
        padded.append(op.get_friendly_name())
    model.validate_nodes_and_infer_types()
    return padded


def optimize_model(model: ov.Model) -> tuple[ov.Model, list[str]]:
    """A copy of a float ``model`` with the exact CPU rewrites applied (upsample-convolution
    folding, dense folding, then :mod:`caloforge.ovgraph.shuffle`'s narrowing of sub-pixel
    convolutions to the crop after them, :mod:`caloforge.ovgraph.moves`' channel selections
    ahead of elementwise ops and data-movement chains as one ``Gather``, and depth-to-space
    fusion of the shuffles left); returns ``(model,
    names of the rewritten layers)`` (the shuffle fusion changes no layer and is not listed). Quantized models
    are returned unchanged (their layer names are what a tuned configuration refers to)."""
    if is_quantized(model):
        return model, []
    model = model.clone()
    done = fold_upsample_convolutions(model)
    done += fold_dense_into_convolution(model)
    done += narrow_to_crops(model)
    gather_before_elementwise(model)  # these four move numbers in no layer: not listed
    collapse_moves(model)
    int32_gather_indices(model)
    fuse_depth_to_space(model)
    return model, done
