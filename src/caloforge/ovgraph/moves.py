"""Exact rewrites of data movement: channel selections moved ahead of elementwise arithmetic, and
chains of reshapes, transposes, crops and selections collapsed into one ``Gather``.

Why (the ``phase`` generator's sparse head, ``docs/runtime.md``): its last convolution emits 8
phases x 2 channels; the graph shuffles them to 2 x 26^3 cells (rank-8 reshape/transpose), crops
25^3, adds the 2-channel prior, then takes channel 0 (occupancy logits) and channel 1 (log
energies) apart. On the CPU plugin that is a ``Transpose`` (generic kernel), a ``Slice`` copy,
two layout reorders, a ``Concat`` of the prior's two halves and two channel ``Gather`` copies:
~5 ms of a ~27 ms INT8 batch of 32. Every one of those ops only moves numbers:

* :func:`gather_before_elementwise`: ``Gather_c(a + b) = Gather_c(a) + Gather_c(b)`` (same for
  ``-``, ``*``, ``/``, max, min) when only constant-index ``Gather`` nodes read the sum; a
  constant operand is gathered at once. The prior then reaches each channel without the
  ``Concat``, and the addition fuses into the elementwise kernel that follows.
* :func:`collapse_moves`: a chain of ``Reshape`` / ``Transpose`` / ``Slice`` / ``Gather``
  (constant indices) / ``Squeeze`` / ``Unsqueeze`` / ``Concat`` that keeps the batch axis maps
  every output number to one input number. The map is computed once, by running the chain on
  the numbers' own indices (NumPy), and the chain becomes one ``Gather`` on the flattened input
  (or a plain ``Reshape`` when the map is the identity). Applied to chains that do more than a
  shuffle (a ``Transpose`` followed by a crop or selection, or a ``Concat`` read in one piece):
  a bare depth-to-space stays for :func:`caloforge.ovgraph.shuffle.fuse_depth_to_space`.
* :func:`int32_gather_indices`: large constant ``Gather`` index tensors stored as int32.

Both are exact (numbers are moved, never computed) for any model; nothing is matched by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from caloforge.ovgraph.dense import _const

if TYPE_CHECKING:  # pragma: no cover
    import openvino as ov

#: Binary elementwise ops a channel ``Gather`` can move ahead of.
ELEMENTWISE = frozenset({"Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum"})
#: Ops that only move numbers (with constant side inputs), batch axis kept.
MOVES = frozenset({"Reshape", "Transpose", "Slice", "Gather", "Squeeze", "Unsqueeze", "Concat"})
#: Largest index map (numbers per sample) :func:`collapse_moves` builds.
MAX_MAP = 1 << 22


def _sample_shape(out: ov.Output) -> list[int] | None:
    """Dims 1.. of a tensor of rank >= 1 when static (dim 0, the batch, may be dynamic)."""
    ps = out.get_partial_shape()
    if ps.rank.is_dynamic or ps.rank.get_length() < 1:
        return None
    dims = list(ps)[1:]
    if any(d.is_dynamic for d in dims):
        return None
    return [d.get_length() for d in dims]


def _gather_spec(node: ov.Node) -> tuple[np.ndarray, int] | None:
    """(constant indices, axis >= 1) of a ``Gather`` with batch_dims 0, else None."""
    if node.get_type_name() != "Gather" or node.get_input_size() != 3:
        return None
    idx, axis = (_const(node.input_value(i).get_node()) for i in (1, 2))
    rank = node.get_input_partial_shape(0).rank
    if idx is None or axis is None or rank.is_dynamic or node.get_attributes().get("batch_dims"):
        return None
    a = int(np.asarray(axis).reshape(-1)[0]) % rank.get_length()
    return (np.asarray(idx), a) if a >= 1 else None


def gather_before_elementwise(model: ov.Model) -> list[str]:
    """Move constant-index ``Gather`` nodes (axis >= 1) ahead of the binary elementwise op they
    all read, when both its operands have the full rank and size on that axis (a constant one
    is gathered here); in place. Returns the names of the elementwise ops moved past."""
    import openvino.opset13 as ops

    done = []
    for node in model.get_ordered_ops():
        if node.get_type_name() not in ELEMENTWISE:
            continue
        readers = [t.get_node() for t in node.output(0).get_target_inputs()]
        specs = [_gather_spec(r) for r in readers]
        if not readers or any(s is None for s in specs):
            continue
        out_ps = node.get_output_partial_shape(0)
        srcs = [node.input_value(i) for i in range(2)]
        if any(s.get_partial_shape() != out_ps for s in srcs):
            continue  # broadcasting operand: left as is
        for reader, spec in zip(readers, specs, strict=True):
            assert spec is not None
            idx, axis = spec
            parts = []
            for s in srcs:
                c = _const(s.get_node())
                parts.append(ops.constant(np.take(c, idx, axis=axis)) if c is not None else
                             ops.gather(s, ops.constant(idx), ops.constant(np.int64(axis))))
            y = getattr(ops, _OPSET_NAME[node.get_type_name()])(*parts)
            y.set_friendly_name(reader.get_friendly_name())
            reader.output(0).replace(y.output(0))
        done.append(node.get_friendly_name())
    if done:
        model.validate_nodes_and_infer_types()
    return done


_OPSET_NAME = {"Add": "add", "Subtract": "subtract", "Multiply": "multiply",
               "Divide": "divide", "Maximum": "maximum", "Minimum": "minimum"}


def _is_move(node: ov.Node) -> bool:
    """A number-moving op with constant side inputs that keeps axis 0 (the batch) as it is."""
    kind = node.get_type_name()
    if kind not in MOVES or _sample_shape(node.output(0)) is None:
        return False
    if any(_sample_shape(node.input_value(i)) is None for i in _data_inputs(node)):
        return False
    side = [node.input_value(i).get_node() for i in range(node.get_input_size())
            if i not in _data_inputs(node)]
    if any(_const(s) is None for s in side):
        return False
    rank = node.get_input_partial_shape(0).rank.get_length()
    if kind == "Reshape":
        target = np.asarray(_const(node.input_value(1).get_node())).reshape(-1)
        zero = node.get_attributes().get("special_zero", False)
        return (target.size >= 1 and int(target[0]) == 0 and bool(zero)) \
            or _per_sample_reshape(node)
    if kind == "Transpose":
        perm = np.asarray(_const(node.input_value(1).get_node())).reshape(-1)
        return perm.size >= 1 and int(perm[0]) == 0
    if kind == "Slice":
        axes = _slice_axes(node, rank)
        steps = np.asarray(_const(node.input_value(3).get_node())).reshape(-1)
        return 0 not in axes and bool((steps != 0).all())
    if kind == "Gather":
        return _gather_spec(node) is not None
    if kind in ("Squeeze", "Unsqueeze"):
        if node.get_input_size() < 2:
            return False
        dims = np.asarray(_const(node.input_value(1).get_node())).reshape(-1)
        r = rank if kind == "Squeeze" else rank + dims.size
        return all(int(a) % r != 0 for a in dims)
    if kind == "Concat":
        return int(node.get_attributes()["axis"]) % rank != 0
    return False


def _per_sample_reshape(node: ov.Node) -> bool:
    """A Reshape whose output keeps the input's batch dimension (same static size, or both
    dynamic with equal numbers per sample)."""
    a, b = node.get_input_partial_shape(0), node.get_output_partial_shape(0)
    return a[0] == b[0] if a[0].is_static else (b[0].is_dynamic and np.prod(
        _sample_shape(node.input_value(0)) or [0]) == np.prod(_sample_shape(node.output(0)) or [1]))


def _data_inputs(node: ov.Node) -> range:
    return range(node.get_input_size()) if node.get_type_name() == "Concat" else range(1)


def _slice_axes(node: ov.Node, rank: int) -> list[int]:
    if node.get_input_size() > 4:
        axes = np.asarray(_const(node.input_value(4).get_node())).reshape(-1)
    else:
        axes = np.arange(np.asarray(_const(node.input_value(1).get_node())).size)
    return [int(a) % rank for a in axes]


def _evaluate(node: ov.Node, sources: dict[int, tuple[ov.Output, int]],
              kinds: list[str]) -> np.ndarray:
    """The chain ending at ``node`` run on index tensors: each number's global index (sources
    are numbered in turn, see ``sources``: id of output -> (output, offset))."""
    kind = node.get_type_name()
    kinds.append(kind)
    args = []
    for i in _data_inputs(node):
        src = node.input_value(i)
        if _is_move(src.get_node()):
            args.append(_evaluate(src.get_node(), sources, kinds))
            continue
        key = hash((src.get_node().get_name(), src.get_index()))
        shape = _sample_shape(src)
        assert shape is not None
        if key not in sources:
            sources[key] = (src, sum(int(np.prod(_sample_shape(s) or [0]))
                                     for s, _ in sources.values()))
        args.append(np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
                    + sources[key][1])
    x = args[0]
    rank = x.ndim + 1
    out_shape = _sample_shape(node.output(0))
    if kind == "Transpose":
        perm = np.asarray(_const(node.input_value(1).get_node())).reshape(-1)
        return np.transpose(x, [int(p) - 1 for p in perm[1:]])
    if kind == "Slice":
        starts, stops, steps = (np.asarray(_const(node.input_value(i).get_node())).reshape(-1)
                                for i in (1, 2, 3))
        cut = [slice(None)] * x.ndim
        for a, lo, hi, st in zip(_slice_axes(node, rank), starts, stops, steps, strict=True):
            cut[a - 1] = slice(int(lo), int(hi), int(st))
        return x[tuple(cut)].reshape(out_shape)
    if kind == "Gather":
        spec = _gather_spec(node)
        assert spec is not None
        return np.take(x, spec[0], axis=spec[1] - 1)
    if kind == "Concat":
        return np.concatenate(args, axis=int(node.get_attributes()["axis"]) % rank - 1)
    return x.reshape(out_shape)  # Reshape, Squeeze, Unsqueeze


def _worth_it(kinds: list[str], identity: bool) -> bool:
    """More than a bare shuffle: a transpose with a crop/selection, a selection from a slice or
    a concatenation (one copy instead of two), or a reshape-only result."""
    return identity or ("Transpose" in kinds and bool({"Slice", "Gather"} & set(kinds))) \
        or ("Gather" in kinds and bool({"Concat", "Slice"} & set(kinds)))


def _channel_last(src: ov.Output) -> bool:
    """A rank-5 convolution output (or its bias sum): the CPU plugin writes it channel-last, so
    a ``Gather`` of its ``(N, D, H, W, C)`` view needs no layout reorder first (measured: the
    phase generator's 16-channel 13^3 one, reorder 0.8 -> 0.15 ms per INT8 batch of 32)."""
    node = src.get_node()
    if node.get_type_name() == "Add":
        kinds = [node.input_value(i).get_node().get_type_name() for i in range(2)]
        node = node.input_value(kinds.index("Convolution")).get_node() \
            if "Convolution" in kinds and "Constant" in kinds else node
    shape = _sample_shape(src)
    return node.get_type_name() == "Convolution" and shape is not None and len(shape) == 4


def collapse_moves(model: ov.Model) -> list[str]:
    """Replace every chain of number-moving ops (:data:`MOVES`, batch axis kept) that ends in a
    node read by something else, and does more than a shuffle, with one ``Gather`` of a
    constant index map (or a ``Reshape``), in place; returns the names of the chains' last
    nodes. Chains that read several tensors (a ``Concat`` of two, both used) stay."""
    import openvino.opset13 as ops

    done = []
    for node in model.get_ordered_ops():
        if not _is_move(node):
            continue
        readers = [t.get_node() for t in node.output(0).get_target_inputs()]
        if readers and all(_is_move(r) for r in readers):
            continue  # not the end of its chain
        out_shape = _sample_shape(node.output(0))
        if out_shape is None or int(np.prod(out_shape)) > MAX_MAP:
            continue
        sources: dict[int, tuple[ov.Output, int]] = {}
        kinds: list[str] = []
        index = _evaluate(node, sources, kinds).reshape(-1)
        used = [(s, off) for s, off in sources.values()
                if ((index >= off) & (index < off + int(np.prod(_sample_shape(s) or [0])))).any()]
        if len(used) != 1 or len(kinds) < 2:
            continue
        src, off = used[0]
        local = index - off
        size = int(np.prod(_sample_shape(src) or [0]))
        identity = local.size == size and bool((local == np.arange(size)).all())
        if not _worth_it(kinds, identity):
            continue
        shape = ops.constant(np.array([0, *out_shape], np.int64))
        if identity:
            y = ops.reshape(src, shape, True)
        else:
            if _channel_last(src):  # gather from the layout the convolution writes
                c, rest = _sample_shape(src)[0], int(np.prod(_sample_shape(src)[1:]))  # type: ignore[index]
                ch, pos = np.divmod(local, rest)
                local = pos * c + ch
                src = ops.transpose(src, ops.constant(np.array([0, 2, 3, 4, 1], np.int64))).output(0)
            flat = ops.reshape(src, ops.constant(np.array([0, -1], np.int64)), True)
            y = ops.reshape(ops.gather(flat, ops.constant(local.astype(np.int32)),
                                       ops.constant(np.int64(1))), shape, True)
        y.set_friendly_name(node.get_friendly_name() + "/moved")
        node.output(0).replace(y.output(0))
        done.append(node.get_friendly_name())
    if done:
        model.validate_nodes_and_infer_types()
    return done


def int32_gather_indices(model: ov.Model, min_size: int = 1024) -> list[str]:
    """Store the constant indices (at least ``min_size`` of them) of every ``Gather`` as int32
    when they are int64 (as ``torch.onnx`` writes a tensor index), in place; returns the names
    of those Gathers. Same numbers gathered; the kernel streams half the index bytes (the phase
    generator's two cell-noise Gathers of 15,625 indices: INT8 profile, all four Gathers of
    its tail ~1.9 -> ~1.4 ms per batch of 32)."""
    import openvino.opset13 as ops

    done = []
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Gather":
            continue
        idx = _const(node.input_value(1).get_node())
        if idx is None or idx.dtype != np.int64 or idx.size < min_size \
                or idx.min() < np.iinfo(np.int32).min or idx.max() > np.iinfo(np.int32).max:
            continue
        node.input(1).replace_source_output(ops.constant(idx.astype(np.int32)).output(0))
        done.append(node.get_friendly_name())
    if done:
        model.validate_nodes_and_infer_types()
    return done


__all__ = ["ELEMENTWISE", "MAX_MAP", "MOVES", "collapse_moves", "gather_before_elementwise",
           "int32_gather_indices"]
