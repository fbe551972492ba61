"""Exact rewrites of sub-pixel shuffles (depth-to-space as ``Reshape -> Transpose -> Reshape``).

A sub-pixel convolution (:mod:`caloforge.gan.subpixel`, and the phase layout of
:func:`caloforge.ovgraph.rewrites.fold_upsample_convolutions`) ends in a rank-8
reshape/transpose/reshape.

* :func:`narrow_to_crops`: when only a box of the shuffled output is used (``Slice`` nodes after
  it, as the ``phase`` generator keeps 25^3 of its 28^3 output), the convolution computes only
  the blocks that box needs (13^3 of 15^3 there), on the matching part of its input.
* :func:`fuse_depth_to_space`: the shuffle as one ``DepthToSpace`` when it has more than one
  output channel. The CPU plugin runs a rank-8 Transpose with a generic kernel after reordering
  the convolution's blocked output to a plain layout; its ``DepthToSpace`` JIT kernel reads the
  blocked layout (1.0 vs 2.6 + 2.5 ms per batch of 32 for the phase generator's 16-channel
  14^3 shuffle). With one output channel the Transpose was the faster (0.7 vs 1.9-3.3 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from caloforge.ovgraph.dense import _const

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

#: Shuffles with fewer output channels stay a Transpose (measured faster for 1 channel).
D2S_MIN_CHANNELS = 2

#: Transpose orders of a 3-D depth-to-space, by OpenVINO DepthToSpace mode.
_PERMS = {"blocks_first": (0, 4, 5, 1, 6, 2, 7, 3), "depth_first": (0, 1, 5, 2, 6, 3, 7, 4)}


def _static(shape: ov.PartialShape, rank: int) -> list[int] | None:
    """Dims 1.. of ``shape`` when its rank is ``rank`` and they are static, else None."""
    if shape.rank.is_dynamic or shape.rank.get_length() != rank:
        return None
    dims = list(shape)[1:]
    if any(d.is_dynamic for d in dims):
        return None
    return [d.get_length() for d in dims]


def _single_consumer(node: ov.Node) -> ov.Node | None:
    targets = list(node.output(0).get_target_inputs())
    return targets[0].get_node() if len(targets) == 1 else None


def _match(tr: ov.Node) -> tuple[ov.Output, str, int, ov.Node] | None:
    """(input of the first reshape, mode, block size, last reshape) or None."""
    if tr.get_type_name() != "Transpose":
        return None
    perm = _const(tr.input_value(1).get_node())
    mode = next((m for m, p in _PERMS.items() if perm is not None
                 and tuple(int(v) for v in perm.reshape(-1)) == p), None)
    first = tr.input_value(0).get_node()
    last = _single_consumer(tr)
    if mode is None or first.get_type_name() != "Reshape" or last is None \
            or last.get_type_name() != "Reshape" or _single_consumer(first) is not tr:
        return None
    x = first.input_value(0)
    xin = _static(x.get_partial_shape(), 5)
    mid = _static(first.get_output_partial_shape(0), 8)
    out = _static(last.get_output_partial_shape(0), 5)
    if xin is None or mid is None or out is None:
        return None
    c, d, h, w = xin
    blocks = mid[0:3] if mode == "blocks_first" else mid[1:4]
    b = blocks[0]
    depth = mid[3] if mode == "blocks_first" else mid[0]
    if b < 2 or blocks != [b, b, b] or depth * b ** 3 != c or mid[4:] != [d, h, w] \
            or out != [depth, d * b, h * b, w * b]:
        return None
    return x, mode, b, last


def fuse_depth_to_space(model: ov.Model) -> list[str]:
    """Replace every rank-8 depth-to-space ``Reshape -> Transpose -> Reshape`` with equal
    block sizes on the three spatial axes and more than one output channel by
    ``DepthToSpace`` (in place); returns the names of the replaced Transpose nodes."""
    import openvino.opset13 as ops

    done = []
    for tr in model.get_ordered_ops():
        m = _match(tr)
        if m is None or _static(m[3].get_output_partial_shape(0), 5)[0] < D2S_MIN_CHANNELS:  # type: ignore[index]
            continue
        x, mode, b, last = m
        y = ops.depth_to_space(x, mode, b)
        y.set_friendly_name(last.get_friendly_name())
        last.output(0).replace(y.output(0))
        done.append(tr.get_friendly_name())
    if done:
        model.validate_nodes_and_infer_types()
    return done



@dataclass
class _Chain:
    box: list[list[int]]  # [lo, hi) per spatial axis
    slices: list[ov.Node]
    tail: ov.Node  # the chain's last node
    axes: dict[int, int]  # axis of the tail's output -> spatial axis


def _crop_chain(last: ov.Node, full: list[int]) -> _Chain | None:
    """Follow the single-consumer chain after ``last`` (a rank-5 [N, C, X, Y, Z] tensor) through
    ``Slice`` nodes on the spatial axes (step 1) and ``Gather`` of one channel: the spatial box
    they keep, or None when no slice is there."""
    box = [[0, n] for n in full]
    axes = {2: 0, 3: 1, 4: 2}  # axis of the current tensor -> spatial axis
    rank, node, slices = 5, last, []
    while True:
        nxt = _single_consumer(node)
        kind = None if nxt is None else nxt.get_type_name()
        if kind == "Gather" and nxt is not None and nxt.get_input_size() == 3:
            axis, index = (_const(nxt.input_value(i).get_node()) for i in (2, 1))
            if axis is None or index is None or index.ndim != 0 or int(axis) % rank != 1:
                break
            axes, rank = {a - 1: sp for a, sp in axes.items()}, rank - 1
        elif kind == "Slice":
            cut = _slice_cut(nxt, rank, axes, box)
            if cut is None:
                break
            box = cut
            slices.append(nxt)
        else:
            break
        node = nxt
    return _Chain(box, slices, node, axes) if slices else None


def _slice_cut(node: ov.Node, rank: int, axes: dict[int, int],
               box: list[list[int]]) -> list[list[int]] | None:
    vals = [_const(node.input_value(i).get_node()) for i in range(1, node.get_input_size())]
    if len(vals) < 4 or any(v is None for v in vals):
        return None
    starts, stops, steps, which = (np.asarray(v).reshape(-1).astype(np.int64) for v in vals[:4])
    if (steps != 1).any():
        return None
    out = [list(b) for b in box]
    for a, lo, hi in zip(which, starts, stops, strict=True):
        sp = axes.get(int(a) % rank)
        if sp is None:
            return None
        n = out[sp][1] - out[sp][0]
        a_lo, a_hi = (int(v) + n if v < 0 else min(int(v), n) for v in (lo, hi))
        a_lo, a_hi = max(a_lo, 0), max(min(a_hi, n), 0)
        if a_hi <= a_lo:
            return None
        out[sp] = [out[sp][0] + a_lo, out[sp][0] + a_hi]
    return out


@dataclass
class _SubPixel:
    """``x -> [Pad(zeros)] -> Convolution(stride 1) -> [Add(bias)] -> shuffle``, found."""

    x: ov.Output  # the convolution's input before its zero padding
    weight: ov.Output
    bias: ov.Output | None
    pad: list[int]  # zero padding before the first spatial cell, per axis (Pad + convolution)
    block: int
    channels: int
    blocks: list[int]  # blocks per axis (the convolution's output size)
    name: str  # the convolution's


def _subpixel(tr: ov.Node) -> tuple[_SubPixel, ov.Node] | None:
    m = _match(tr)
    if m is None or m[1] != "blocks_first":
        return None
    out, _, b, last = m
    node, bias = out.get_node(), None
    if node.get_type_name() == "Add":
        srcs = [node.input_value(i) for i in range(2)]
        consts = [_const(v.get_node()) for v in srcs]
        k = 1 if consts[1] is not None else 0
        if consts[k] is None or consts[1 - k] is not None or _single_consumer(node) is None:
            return None
        bias, node = srcs[k], srcs[1 - k].get_node()
    if node.get_type_name() != "Convolution" or _single_consumer(node) is None:
        return None
    a = node.get_attributes()
    if any(v != 1 for v in a["strides"]) or any(v != 1 for v in a["dilations"]) \
            or a["auto_pad"] not in ("explicit", "valid") or any(a["pads_end"]):
        return None
    pad = [int(v) for v in a["pads_begin"]]
    x = node.input_value(0)
    src = x.get_node()
    if src.get_type_name() == "Pad" and src.get_attributes().get("pad_mode") == "constant":
        pb, pe = (_const(src.input_value(i).get_node()) for i in (1, 2))
        val = _const(src.input_value(3).get_node()) if src.get_input_size() > 3 else 0.0
        if pb is not None and pe is not None and val is not None and float(np.asarray(val)) == 0 \
                and not pb[:2].any() and not pe[:2].any() and (pb >= 0).all() and (pe >= 0).all():
            pad = [pad[i] + int(pb[2 + i]) for i in range(3)]
            x = src.input_value(0)
    if _static(x.get_partial_shape(), 5) is None:
        return None
    blocks = _static(node.get_output_partial_shape(0), 5)
    assert blocks is not None  # the shuffle's input is static (checked by _match)
    return _SubPixel(x, node.input_value(1), bias, pad, b, blocks[0] // b ** 3, blocks[1:],
                     node.get_friendly_name()), last


def narrow_to_crops(model: ov.Model) -> list[str]:
    """Compute only the blocks of a sub-pixel convolution that the ``Slice`` nodes after its
    shuffle keep (in place); returns the names of the narrowed convolutions (the new ones are
    called ``<name>/narrowed``)."""
    import openvino.opset13 as ops

    done = []
    for tr in model.get_ordered_ops():
        found = _subpixel(tr)
        if found is None:
            continue
        sp, last = found
        b = sp.block
        chain = _crop_chain(last, [n * b for n in sp.blocks])
        if chain is None:
            continue
        box = chain.box
        lo_b = [box[i][0] // b for i in range(3)]
        hi_b = [-(-box[i][1] // b) for i in range(3)]
        if lo_b == [0, 0, 0] and hi_b == sp.blocks:
            continue
        size = _static(sp.x.get_partial_shape(), 5)[1:]  # type: ignore[index]
        taps = _static(sp.weight.get_partial_shape(), 5)[1:]  # type: ignore[index]
        first = [lo_b[i] - sp.pad[i] for i in range(3)]  # input window, x coordinates
        stop = [hi_b[i] + taps[i] - 2 - sp.pad[i] for i in range(3)]  # inclusive
        lo = [max(v, 0) for v in first]
        hi = [min(stop[i], size[i] - 1) + 1 for i in range(3)]
        y = sp.x
        if lo != [0, 0, 0] or hi != size:  # a no-op Slice would keep the convolution in f32
            y = ops.slice(y, ops.constant(np.array(lo, np.int64)),
                          ops.constant(np.array(hi, np.int64)), ops.constant(np.ones(3, np.int64)),
                          ops.constant(np.array([2, 3, 4])))
        left = [max(0, -v) for v in first]
        right = [max(0, stop[i] - (size[i] - 1)) for i in range(3)]
        if any(left) or any(right):
            y = ops.pad(y, ops.constant(np.array([0, 0, *left], np.int64)),
                        ops.constant(np.array([0, 0, *right], np.int64)), "constant",
                        ops.constant(np.array(0, np.float32)))
        y = ops.convolution(y, sp.weight, [1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1])
        y.set_friendly_name(sp.name + "/narrowed")
        if sp.bias is not None:
            y = ops.add(y, sp.bias)
        n = [hi_b[i] - lo_b[i] for i in range(3)]
        y = ops.reshape(y, ops.constant(np.array([0, b, b, b, sp.channels, *n], np.int64)), True)
        y = ops.transpose(y, ops.constant(np.array(_PERMS["blocks_first"], np.int64)))
        y = ops.reshape(y, ops.constant(np.array([0, sp.channels, *(v * b for v in n)],
                                                 np.int64)), True)
        y.set_friendly_name(last.get_friendly_name() + "/narrowed")
        targets = list(chain.tail.output(0).get_target_inputs())
        last.output(0).replace(y.output(0))
        for s in chain.slices:  # replaced by one crop at the chain's end (after any Gather:
            s.output(0).replace(s.input_value(0))  # the smaller tensor)
        axes = sorted(chain.axes.items())
        crop = ops.slice(targets[0].get_source_output(),
                         ops.constant(np.array([box[i][0] - lo_b[i] * b for _, i in axes])),
                         ops.constant(np.array([box[i][1] - lo_b[i] * b for _, i in axes])),
                         ops.constant(np.ones(3, np.int64)),
                         ops.constant(np.array([a for a, _ in axes])))
        crop.set_friendly_name(chain.tail.get_friendly_name() + "/crop")
        for t in targets:
            t.replace_source_output(crop.output(0))
        done.append(sp.name)
    if done:
        model.validate_nodes_and_infer_types()
    return done


__all__ = ["fuse_depth_to_space", "narrow_to_crops"]
