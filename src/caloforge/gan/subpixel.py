"""Transposed convolutions rewritten as sub-pixel convolutions, for export (same function).

A transposed convolution of stride ``s``, kernel ``K`` and padding ``p`` computes, per axis,
``y[o] = sum_{i,k: o = s*i - p + k} x[i] w[k]``. Write ``o + p = s*m + r`` (block ``m``, phase
``0 <= r < s``): then ``k = s*j + r`` and ``i = m - j``, so

    y[s*m + r - p] = sum_{j=0}^{T_r - 1} x[m - j] w[s*j + r],   T_r = ceil((K - r) / s):

every output phase is an ordinary convolution with a ``T_r``-tap kernel at the *low*
resolution, and a depth-to-space shuffle (Shi et al., CVPR 2016) interleaves the phases. A
deconvolution kernel instead walks the full ``K``-tap kernel over a zero-dilated input. Two
forms, both exact:

* ``"fused"``: one convolution with ``prod(s) * C_out`` output channels over the common window
  ``x[m-T+1 .. m]`` of all phases (``T = ceil(K/s)``). Wide outputs for a narrow layer (the
  ``phase`` generator's 1-channel 28^3 layer gets 8 channels), but a block grid one block longer
  than the output needs per axis when ``p > 0`` (8^3 blocks for a 14^3 output).
* ``"split"``: one convolution per output phase, each with its own padding so that it computes
  exactly the outputs of its phase, then a channel concatenation. No multiply-add is spent
  outside the output; the choice for layers with >= :data:`SPLIT_MIN_CHANNELS` output channels.

Measured on the development CPU (docs/runtime.md): the ``phase`` generator's ``up2`` (16 -> 1)
fused, its ``up1`` (64 -> 16) split. :func:`subpixel_copy` returns a deep copy of a module with
every ``nn.ConvTranspose3d`` replaced by a :class:`SubPixelConvTranspose3d` (same call, same
output up to float rounding): the forward around them is untouched.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

#: Layers with at least this many output channels take the ``"split"`` form.
SPLIT_MIN_CHANNELS = 16


@dataclass(frozen=True)
class _Window:
    """Per axis: the input slice ``[start, stop)``, zero padding ``(left, right)`` and the tap
    indices ``k`` of the weight, in correlation order, that one convolution needs."""

    start: int
    stop: int
    left: int
    right: int
    taps: tuple[int, ...]


def _out_size(size: int, s: int, k: int, p: int, op: int) -> int:
    return (size - 1) * s - 2 * p + k + op


def _window(size: int, s: int, k: int, first_block: int, blocks: int, r: int) -> _Window:
    """Blocks ``first_block .. first_block + blocks - 1`` of phase ``r`` (``o + p = s*m + r``):
    each reads ``x[m - T_r + 1 .. m]`` with weights ``w[s*(T_r - 1 - t) + r]``."""
    taps = max(1, math.ceil((k - r) / s))
    a, b = first_block - taps + 1, first_block + blocks - 1  # input window, inclusive
    weights = tuple(s * (taps - 1 - t) + r for t in range(taps))
    return _Window(max(a, 0), min(b, size - 1) + 1, max(0, -a), max(0, b - (size - 1)), weights)


def _phase_kernel(w: torch.Tensor, wins: tuple[_Window, ...]) -> torch.Tensor:
    """(cout, cin, T0, T1, T2) kernel of one phase from the deconvolution weight (cin, cout,
    K...); taps beyond the kernel (``s*j + r >= K``) are zero."""
    cin, cout = int(w.shape[0]), int(w.shape[1])
    out = torch.zeros(cout, cin, *(len(v.taps) for v in wins), dtype=w.dtype)
    for t in itertools.product(*(range(len(v.taps)) for v in wins)):
        kk = [wins[i].taps[t[i]] for i in range(3)]
        if all(kk[i] < w.shape[2 + i] for i in range(3)):
            out[:, :, t[0], t[1], t[2]] = w[:, :, kk[0], kk[1], kk[2]].transpose(0, 1)
    return out


class SubPixelConvTranspose3d(nn.Module):
    """``forward(x)`` equal to ``deconv(x)`` for the ``nn.ConvTranspose3d`` it was built from
    (groups 1, dilation 1, zero padding mode), as convolutions at the input resolution and a
    depth-to-space shuffle; ``mode`` ``"fused"``, ``"split"`` or ``"auto"`` (split from
    :data:`SPLIT_MIN_CHANNELS` output channels). Inference only: the phase kernels are made
    from the weights at construction (buffers ``weight0``, ``weight1``, ... and ``bias``)."""

    def __init__(self, deconv: nn.ConvTranspose3d, mode: str = "auto") -> None:
        super().__init__()
        if deconv.groups != 1 or tuple(deconv.dilation) != (1, 1, 1) \
                or deconv.padding_mode != "zeros" or isinstance(deconv.padding, str):
            raise ValueError("deconv: only groups=1, dilation=1, zero-padded transposed "
                             "convolutions have a sub-pixel form here")
        if mode not in ("auto", "fused", "split"):
            raise ValueError(f"mode {mode!r}: expected 'auto', 'fused' or 'split'")
        self.out_channels = int(deconv.out_channels)
        self.mode = mode if mode != "auto" else (
            "split" if self.out_channels >= SPLIT_MIN_CHANNELS else "fused")
        self.stride = tuple(int(v) for v in deconv.stride)
        self.kernel = tuple(int(v) for v in deconv.kernel_size)
        self.padding = tuple(int(v) for v in deconv.padding)
        self.output_padding = tuple(int(v) for v in deconv.output_padding)
        w = deconv.weight.detach().to(torch.float64)
        # the taps of a window do not depend on the input size (only its bounds do)
        kernels = self._kernels(w, (1, 1, 1))
        self.n_convs = len(kernels)
        for i, k in enumerate(kernels):
            self.register_buffer(f"weight{i}", k.to(deconv.weight.dtype).contiguous())
        bias = None
        if deconv.bias is not None:
            bias = deconv.bias.detach().clone()
            if self.mode == "fused":
                bias = bias.repeat(len(self._phases()))
        self.register_buffer("bias", bias)

    def _phases(self) -> list[tuple[int, int, int]]:
        return [(int(a), int(b), int(c)) for a, b, c in
                itertools.product(*(range(v) for v in self.stride))]

    def _plan(self, size: tuple[int, int, int]) -> list[tuple[_Window, ...]]:
        """Per convolution: its three windows (one per spatial axis)."""
        s, k, p = self.stride, self.kernel, self.padding
        outs = [_out_size(size[i], s[i], k[i], p[i], self.output_padding[i]) for i in range(3)]
        if self.mode == "fused":  # blocks covering all outputs, the common window of the phases
            m0 = [p[i] // s[i] for i in range(3)]
            nb = [(outs[i] + p[i] - 1) // s[i] - m0[i] + 1 for i in range(3)]
            wins = tuple(_window(size[i], s[i], k[i] + s[i] - 1, m0[i], nb[i], s[i] - 1)
                         for i in range(3))
            return [wins]
        plans = []
        nq = [math.ceil(outs[i] / s[i]) for i in range(3)]  # outputs o = s*q + r, q < nq
        for r in self._phases():
            # o = s*q + r  ->  o + p = s*(q + (r + p) // s) + (r + p) % s
            wins = tuple(_window(size[i], s[i], k[i], (r[i] + p[i]) // s[i], nq[i],
                                 (r[i] + p[i]) % s[i]) for i in range(3))
            plans.append(wins)
        return plans

    def _kernels(self, w: torch.Tensor, size: tuple[int, int, int]) -> list[torch.Tensor]:
        plans = self._plan(size)
        if self.mode == "split":
            return [_phase_kernel(w, wins) for wins in plans]
        wins = plans[0]
        kernels = []
        for r in self._phases():  # phase r of the common window: taps of index s*j + r
            own = tuple(_Window(win.start, win.stop, win.left, win.right,
                                tuple(t - (self.stride[i] - 1) + r[i] for t in win.taps))
                        for i, win in enumerate(wins))
            kernels.append(_phase_kernel(w, own))
        return [torch.cat(kernels, 0)]  # phases first (blocks_first order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
        s, c = self.stride, self.out_channels
        outs = [_out_size(size[i], s[i], self.kernel[i], self.padding[i],
                          self.output_padding[i]) for i in range(3)]
        plans = self._plan(size)
        ys = []
        for i, wins in enumerate(plans):
            xi = x
            if any(win.start > 0 or win.stop < n for win, n in zip(wins, size, strict=True)):
                xi = x[:, :, wins[0].start:wins[0].stop, wins[1].start:wins[1].stop,
                       wins[2].start:wins[2].stop]
            pads = [v for win in reversed(wins) for v in (win.left, win.right)]  # last axis first
            if any(pads):
                xi = F.pad(xi, pads)
            ys.append(F.conv3d(xi, getattr(self, f"weight{i}"), cast(torch.Tensor, self.bias)))
        y = ys[0] if len(ys) == 1 else torch.cat(ys, 1)
        m = [int(v) for v in y.shape[2:]]
        y = y.reshape(-1, s[0], s[1], s[2], c, m[0], m[1], m[2])  # phases first; -1: batch
        y = y.permute(0, 4, 5, 1, 6, 2, 7, 3).reshape(-1, c, m[0] * s[0], m[1] * s[1],
                                                       m[2] * s[2])
        lo = [self.padding[i] - s[i] * (self.padding[i] // s[i]) if self.mode == "fused" else 0
              for i in range(3)]
        if lo != [0, 0, 0] or [m[i] * s[i] for i in range(3)] != outs:
            y = y[:, :, lo[0]:lo[0] + outs[0], lo[1]:lo[1] + outs[1], lo[2]:lo[2] + outs[2]]
        return y


def subpixel_copy(module: nn.Module, mode: str = "auto") -> tuple[nn.Module, list[str]]:
    """A deep copy of ``module`` with every ``nn.ConvTranspose3d`` (at any depth) replaced by
    its :class:`SubPixelConvTranspose3d`; returns ``(copy, names of the replaced modules)``.
    ``module`` itself is not changed (and is returned as it is when it holds none)."""
    names = [n for n, m in module.named_modules() if isinstance(m, nn.ConvTranspose3d)]
    if not names:
        return module, []
    out = copy.deepcopy(module)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, attr, SubPixelConvTranspose3d(getattr(parent, attr), mode))
    return out, names
