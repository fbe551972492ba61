"""The ``phase`` architecture: a generator and discriminator co-designed for 2 CPU cores.

Why (measured in ``benchmarks/bench_train.py``; ``docs/gan.md``): the reference 3DGAN upsamples
by repetition and then convolves at full resolution, and its discriminator convolves 32 channels
with 5^3 kernels on all 25^3 cells; a training iteration costs ~20 GFLOP per real shower. Here:

* **Sub-pixel (phase) upsampling.** Each upsampling is a transposed convolution of kernel 4,
  stride 2 (``ConvTranspose3d(k=4, s=2, p=1)``): every output phase (one of the 2^3 positions of
  a cell inside its 2x2x2 block) is a 2^3 convolution evaluated at the *low* resolution (Shi et
  al., "Real-time single image and video super-resolution using an efficient sub-pixel
  convolutional neural network", CVPR 2016; Odena et al., Distill 2016). The work stays at 7^3 and
  14^3 cells; the full-resolution layer has one output channel.
* **Channel counts in multiples of 16** (VNNI/AMX int8 dot products work on 4/16-wide groups).
* **Log cell energies with exact zeros** (:mod:`caloforge.gan.transform`): the network emits
  ``u``; the graph returns ``threshold * exp(u)`` where ``u > 0`` and an exact 0 elsewhere.
* **An energy prior in log space**: ``u = net + prior(ln E)``, a per-cell log image of the
  training data tabulated at 10 energies (equal steps in ln E) and interpolated linearly in
  ln E (the depth of a shower grows with ln E, Rossi's approximation B). The network learns the
  residual.
* **Conditioning**: ``[z_global, ln(E/100), E/100]`` into the dense layer, and FiLM
  scales/shifts of every convolution from ``(ln(E/100), E/100)`` (Perez et al., AAAI 2018).
* **Per-cell noise** (StyleGAN's noise inputs, Karras et al., CVPR 2019): the hits of a shower
  are a random pattern of a few hundred cells, which 64 global numbers cannot draw. The latent
  vector therefore also carries one Gaussian per cell of the 7^3 and 14^3 grids (3,151 numbers
  in all), added to the feature maps with a learned strength per channel. It is an ordinary
  input, so the runtime's seeded noise keeps "same seed, same showers".
* **A discriminator that downsamples early**: strided 4^3 convolutions 25^3 -> 12^3 -> 6^3 -> 3^3
  (16/32/64 channels, ~10 M multiply-adds per shower, against ~800 M for the reference), plus a
  branch on the differentiable high-level features of :mod:`caloforge.gan.features` (response,
  longitudinal profile, hits per layer, centroids, widths), standardised with the data's
  statistics. Spectral normalisation (Miyato et al., ICLR 2018) keeps it smooth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from caloforge.gan.data import CELL_THRESHOLD_GEV
from caloforge.gan.features import calibration_weights, n_features, shower_features
from caloforge.gan.layer_rules import count_rule
from caloforge.gan.layers import SAMPLER_LATENT, LayerEnergySampler, rescale_layers
from caloforge.gan.model import ENERGY_SCALE_GEV, IMAGE_SHAPE
from caloforge.gan.sparse import log_cells, noise_maps, skewed_noise, sparse_cells, sparse_gev
from caloforge.gan.transform import generated_gev, generated_log, occupancy, to_log

#: Latent inputs: 64 global numbers, then one noise value per cell of the 7^3 and 14^3 grids.
GLOBAL_LATENT = 64
NOISE_7 = 7 ** 3
NOISE_14 = 14 ** 3
PHASE_LATENT_DIM = GLOBAL_LATENT + NOISE_7 + NOISE_14
_SLOPE = 0.2
#: Cap of the log output in the exported graph: threshold * e^16 = 8.9 GeV per cell at the
#: 1e-6 GeV threshold, far above the hottest cell of a 500 GeV shower (~0.5 GeV visible). Training
#: works on the uncapped output (a cap there would trap a cell where its gradient vanishes) and
#: penalises ``u > U_MAX`` instead.
U_MAX = 16.0
#: Energies at which the log prior is tabulated (equal steps in ln E over the training range).
PRIOR_KNOTS = 10


def _conditions(energy: torch.Tensor) -> torch.Tensor:
    e = energy.reshape(-1, 1) / ENERGY_SCALE_GEV
    return torch.cat([torch.log(e), e], dim=1)


class _FiLM(nn.Module):
    """Per-channel ``x * (1 + gamma(c)) + beta(c)`` from the energy conditions ``c`` (B, 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2 * channels)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.lin(c).chunk(2, dim=1)
        shape = (-1, x.shape[1], 1, 1, 1)
        return x * (1.0 + gamma.reshape(shape)) + beta.reshape(shape)


class PhaseGenerator(nn.Module):
    """``forward(z, energy)``: ``z`` (B, 64) standard normal, ``energy`` (B,) GeV -> (B, 25, 25,
    25) visible cell energies in GeV with exact zeros below ``cell_threshold_gev``.
    ``forward_log`` returns the pre-threshold log output ``u`` (B, 25, 25, 25)."""

    architecture = "phase"
    cell_threshold_gev: torch.Tensor
    prior: torch.Tensor
    prior_knots: torch.Tensor
    noise_maps: torch.Tensor
    noise_skew: torch.Tensor
    value_layer: torch.Tensor
    occ_cross: torch.Tensor
    value_depth: torch.Tensor
    depth_mean: torch.Tensor
    noise_val_knots: torch.Tensor
    prior_sparse: torch.Tensor

    def __init__(self, base: int = 32, cell_threshold_gev: float = CELL_THRESHOLD_GEV,
                 layer_library: tuple[int, int] | None = None, sparse: bool = False,
                 layer_occupancy: bool = False, library_stats: bool = False) -> None:
        super().__init__()
        #: sparse head (caloforge.gan.sparse): occupancy and energy of each cell drawn apart
        self.sparse = sparse
        #: with a layer-energy library (knots, entries), two more latent numbers draw the
        #: shower's layer energies (:mod:`caloforge.gan.layers`) and the image is rescaled to them
        #: (``library_stats``: its entries also carry hits and widths per layer, which a sparse
        #: head's drawn showers then keep: :mod:`caloforge.gan.layer_rules`)
        self.layers = None if layer_library is None else LayerEnergySampler(
            *layer_library, stats=library_stats)
        self.latent_dim = PHASE_LATENT_DIM + (0 if self.layers is None else SAMPLER_LATENT)
        self.base = base
        self.dense1 = nn.Linear(GLOBAL_LATENT + 2, 256)
        self.dense2 = nn.Linear(256, base * 7 ** 3)
        self.noise7 = nn.Parameter(torch.full((1, base, 1, 1, 1), 0.1))
        self.noise14 = nn.Parameter(torch.full((1, 16, 1, 1, 1), 0.1))
        self.conv1 = nn.Conv3d(base, 2 * base, 3, padding=1)          # 7^3
        self.film1 = _FiLM(2 * base)
        self.up1 = nn.ConvTranspose3d(2 * base, 16, 4, stride=2, padding=1)   # -> 14^3
        self.film2 = _FiLM(16)
        self.conv2 = nn.Conv3d(16, 16, 3, padding=1)                  # 14^3
        self.film3 = _FiLM(16)
        self.up2 = nn.ConvTranspose3d(16, 2 if sparse else 1, 4, stride=2, padding=1)  # 28^3
        with torch.no_grad():  # start close to the prior
            self.up2.weight.mul_(0.1)
            self.up2.bias.zero_()  # type: ignore[union-attr]
        if sparse:
            cells = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
            self.register_buffer("noise_maps", noise_maps(cells, NOISE_7 + NOISE_14))
            # unit noise: with the probit prior a cell fires with its data hit probability
            self.noise_occ = nn.Parameter(torch.ones((1, *IMAGE_SHAPE)))
            self.noise_val = nn.Parameter(torch.ones((1, *IMAGE_SHAPE)))
            #: skewness parameter ``k`` of each cell's energy noise, set by the calibration
            #: (:func:`caloforge.gan.calibrate.calibrate_prior`), not trained; 0: Gaussian
            self.register_buffer("noise_skew", torch.zeros((1, *IMAGE_SHAPE)))
            #: the energy noise's strength at a prior knot, per cell, relative to ``noise_val``
            #: (interpolated in ln E like the prior): set by the calibration (``match="layer"``),
            #: not trained; ones: the same strength at every energy. Why: a cell's share of its
            #: layer's energy scatters less at higher energies in the MC (more particles), and
            #: one strength per cell fitted over 2-500 GeV left the core cell's share at 150-500
            #: GeV scattering 3x the MC's
            self.register_buffer("noise_val_knots", torch.ones((PRIOR_KNOTS, cells)))
            self.register_buffer("prior_sparse", torch.zeros((2, PRIOR_KNOTS, cells)))
        #: the occupancy logit of every cell of layer l moves by ``occ_layer[l](E) x (ln(E_l +
        #: t) - <ln(E_l + t)>_E) + occ_global[l](E) x xi`` (``xi`` the last global latent
        #: number): a layer that gets more energy than usual has more hits, and the hits of all
        #: layers of a shower fluctuate together, as in the MC (at 100 GeV per-layer hit counts
        #: correlate with the layer energy at 0.5-0.8, and what remains is correlated across
        #: layers: the variance of its sum is 3.3x the sum of its variances)
        self.layer_occupancy = bool(layer_occupancy and sparse and self.layers is not None)
        if self.layer_occupancy:
            self.occ_layer = nn.Parameter(torch.zeros((PRIOR_KNOTS, IMAGE_SHAPE[2])))
            self.occ_global = nn.Parameter(torch.zeros((PRIOR_KNOTS, IMAGE_SHAPE[2])))
            #: the log energy of a fired cell of layer l moves by ``value_layer[c](E) x (ln(E_l
            #: + t) - <ln(E_l + t)>_E)``: its share of the layer's energy follows the layer's
            #: energy as in the MC (at 150-500 GeV a cell's ln E rises 0.8x as fast as its
            #: layer's in the core of layer 10 and 1.5-1.8x in the first two rings: a layer
            #: with more energy than usual belongs to a shower that is further developed there,
            #: so wider). Set by the calibration (``match="layer"``), not trained; 0: no coupling
            cells = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
            self.register_buffer("value_layer", torch.zeros((PRIOR_KNOTS, cells)))
            #: the occupancy logits of layer l also move by ``sum_m occ_cross[l, m](E) x (ln(E_m
            #: + t) - <ln(E_m + t)>_E)``, m != l (diagonal 0: that is ``occ_layer``): a layer's
            #: hits follow where the shower stands in its development, which the energies of
            #: all layers tell (in the MC at 125-500 GeV the layer energies explain all but
            #: sd 29-35 of the total hit count's sd of 76-105 about its trend in E; with each
            #: layer coupled to its own energy only the model kept 55-62). Set by the
            #: calibration (``match="layer"`` or ``"hits"``, :mod:`caloforge.gan.hit_counts`),
            #: not trained
            self.register_buffer("occ_cross", torch.zeros((PRIOR_KNOTS, IMAGE_SHAPE[2],
                                                           IMAGE_SHAPE[2])))
            #: the log energy of a fired cell also moves by ``value_depth[c](E) x d``, ``d`` the
            #: shower's depth excess: ``sum_l l E_l / sum_l E_l`` of the layer energies minus
            #: ``depth_mean(E)`` (both hat-interpolated in ln E): the core's width follows where
            #: the shower stands as a whole, as in the MC (at 100-500 GeV the core second moment
            #: correlates with the depth at -0.79; :mod:`caloforge.gan.depth`). Set by the
            #: calibration (``match="depth"``), not trained; 0: no coupling
            self.register_buffer("value_depth", torch.zeros((PRIOR_KNOTS, cells)))
            self.register_buffer("depth_mean", torch.zeros(PRIOR_KNOTS))
        self.register_buffer("cell_threshold_gev", torch.tensor(float(cell_threshold_gev)))
        self.register_buffer("prior", torch.zeros((PRIOR_KNOTS, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
                                                   * IMAGE_SHAPE[2])))
        self.register_buffer("prior_knots", torch.linspace(-3.9, 1.6, PRIOR_KNOTS))

    def added_tensors(self) -> tuple[str, ...]:
        """Name prefixes of the tensors of the parts this model has on top of the plain
        one-channel phase generator (the layer-energy sampler, the sparse head and its last
        layer, the layer-occupancy coupling): what a starting point of another configuration
        (``train --init-generator``) may lack."""
        names: list[str] = []
        if self.layers is not None:
            names.append("layers.")
        if self.sparse:
            names += ["noise_maps", "noise_occ", "noise_val", "noise_skew", "noise_val_knots",
                      "prior_sparse", "up2."]
        if self.layer_occupancy:
            names += ["occ_layer", "occ_global", "value_layer", "occ_cross", "value_depth",
                      "depth_mean"]
        return tuple(names)

    def set_prior(self, prior: torch.Tensor, knots: torch.Tensor,
                  prior_sparse: torch.Tensor | None = None,
                  occ_layer: torch.Tensor | None = None,
                  occ_global: torch.Tensor | None = None) -> None:
        """Per-cell log prior (transformed units) at ``knots`` (ascending values of
        ``ln(E/100)``): ``prior`` has shape (PRIOR_KNOTS, 25, 25, 25); a sparse head's
        ``prior_sparse`` (2, PRIOR_KNOTS, ...) holds the occupancy logits and log energies."""
        with torch.no_grad():
            self.prior.copy_(prior.reshape(self.prior.shape))
            self.prior_knots.copy_(knots.reshape(-1))
            if prior_sparse is not None:
                self.prior_sparse.copy_(prior_sparse.reshape(self.prior_sparse.shape))
            if occ_layer is not None and self.layer_occupancy:
                self.occ_layer.copy_(occ_layer.reshape(self.occ_layer.shape))
            if occ_global is not None and self.layer_occupancy:
                self.occ_global.copy_(occ_global.reshape(self.occ_global.shape))

    def _hat(self, ell: torch.Tensor) -> torch.Tensor:
        """(B, K) weights of the prior knots at ``ell = ln(E/100)`` (B, 1): hat functions,
        constant beyond the end knots."""
        k = self.prior_knots
        ell = torch.clamp(ell, k[0], k[-1])
        return torch.clamp(1.0 - torch.abs(ell - k.reshape(1, -1)) / (k[1] - k[0]), min=0.0)

    def prior_image(self, ell: torch.Tensor) -> torch.Tensor:
        """The prior at ``ell = ln(E/100)`` (B, 1): piecewise linear between the knots (hat
        functions, constant beyond the end knots), shape (B, C, 25, 25, 25) (C = 2 for a
        sparse head: occupancy logits and log energies, else 1)."""
        hat = self._hat(ell)
        if self.sparse:  # (B, 2, 25, 25, 25): occupancy logits and log energies
            return torch.stack([hat @ self.prior_sparse[0], hat @ self.prior_sparse[1]],
                               dim=1).reshape(-1, 2, *IMAGE_SHAPE)
        return (hat @ self.prior).reshape(-1, 1, *IMAGE_SHAPE)

    def _network(self, z: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """The last layer's output (B, C, 25, 25, 25) with the prior added to every channel."""
        c = _conditions(energy)
        zg = z[:, :GLOBAL_LATENT]
        n7 = z[:, GLOBAL_LATENT:GLOBAL_LATENT + NOISE_7].reshape(-1, 1, 7, 7, 7)
        n14 = z[:, GLOBAL_LATENT + NOISE_7:PHASE_LATENT_DIM].reshape(-1, 1, 14, 14, 14)
        h = F.leaky_relu(self.dense1(torch.cat([zg, c], dim=1)), _SLOPE)
        h = F.leaky_relu(self.dense2(h), _SLOPE).reshape(-1, self.base, 7, 7, 7)
        h = F.leaky_relu(self.film1(self.conv1(h + self.noise7 * n7), c), _SLOPE)
        h = F.leaky_relu(self.film2(self.up1(h), c), _SLOPE)
        h = F.leaky_relu(self.film3(self.conv2(h + self.noise14 * n14), c), _SLOPE)
        return self.up2(h)[:, :, 1:26, 1:26, 1:26] + self.prior_image(c[:, :1])

    def _layer_energies(self, z: torch.Tensor, energy: torch.Tensor,
                        layer_energies: torch.Tensor | None) -> torch.Tensor | None:
        if layer_energies is None and self.layers is not None:
            return self.layers(z[:, PHASE_LATENT_DIM:PHASE_LATENT_DIM + SAMPLER_LATENT], energy)
        return layer_energies

    def _one_channel(self, z: torch.Tensor, energy: torch.Tensor,
                     layer_energies: torch.Tensor | None) -> torch.Tensor:
        """The one-channel head's log output, rescaled to the layer energies if any."""
        u = self._network(z, energy)[:, 0]
        target = self._layer_energies(z, energy, layer_energies)
        return u if target is None else rescale_layers(u, target, float(self.cell_threshold_gev))

    def fake_parts(self, z: torch.Tensor, energy: torch.Tensor,
                   layer_energies: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, x, occ, u) of generated showers, with gradients: the transformed image, GeV,
        the straight-through occupancy, and a log tensor ``u`` that is > 0 exactly where a
        cell fires (see :meth:`forward_log`)."""
        thr = float(self.cell_threshold_gev)
        if not self.sparse:
            u = self._one_channel(z, energy, layer_energies)
            return generated_log(u), generated_gev(u, thr), occupancy(u), u
        logit, value, target, width2 = self._sparse_inputs(z, energy, layer_energies)
        t, x, occ = sparse_cells(logit, value, target, thr, width2=width2)
        return t, x, occ, log_cells(t, logit)

    def _sparse_inputs(self, z: torch.Tensor, energy: torch.Tensor,
                       layer_energies: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None,
                                  torch.Tensor | None]:
        """The sparse head's noisy occupancy logits and log energies (B, 25, 25, 25), the
        layer energies (B, 25) GeV the image is rescaled to (None: no rescaling) and the radial
        widths^2 (B, 25) its layers take (None: the network's). A library with hits and widths
        per entry (drawn, not given) fires exactly the entry's hits per layer (the
        :func:`caloforge.gan.layer_rules.count_rule`, in place of :meth:`_layer_rule`) and
        gives its widths."""
        hits: torch.Tensor | None = None
        width2: torch.Tensor | None = None
        target: torch.Tensor | None
        if layer_energies is None and self.layers is not None and self.layers.stats:
            target, hits, width2 = self.layers.draw(
                z[:, PHASE_LATENT_DIM:PHASE_LATENT_DIM + SAMPLER_LATENT], energy)
        else:
            target = self._layer_energies(z, energy, layer_energies)
        out = self._network(z, energy)
        hat = self._hat(_conditions(energy)[:, :1])
        logit = out[:, 0] + self._cell_noise(z, 0)
        value = out[:, 1] + self._cell_noise(z, 1, hat)
        if target is None:
            return logit, value, target, None
        excess = None
        if self.layer_occupancy and self.layers is not None:
            thr = float(self.cell_threshold_gev)
            excess = torch.log(target + thr) - self.layers.log_mean(energy, thr)     # (B, Z)
            value = self._value_couplings(value, excess, target, hat)
        if hits is not None:  # per-layer shifts of the logits would not change which fire
            # (the layer rule after it: a layer with energy whose hits tied fires its top cell)
            return self._layer_rule(count_rule(logit, hits), target), value, target, width2
        shift = torch.zeros_like(target)                                           # (B, Z)
        if excess is not None:
            xi = z[:, GLOBAL_LATENT - 1:GLOBAL_LATENT]                                # (B, 1)
            shift = (hat @ self.occ_layer) * excess + (hat @ self.occ_global) * xi
            if bool(self.occ_cross.any()):  # (an exported graph has the term only if set)
                nz = excess.shape[1]
                cross = (hat @ self.occ_cross.reshape(hat.shape[1], nz * nz)).reshape(-1, nz, nz)
                # a product and a sum, not a MatMul: a MatMul of two activations would be
                # quantized in an INT8 graph (8 bits on excesses spanning -14..+3)
                shift = shift + (cross * excess[:, None, :]).sum(dim=2)
        return self._layer_rule(logit + shift[:, None, None, :], target), value, target, None

    def _value_couplings(self, value: torch.Tensor, excess: torch.Tensor, target: torch.Tensor,
                         hat: torch.Tensor) -> torch.Tensor:
        """The log energies ``value`` (B, 25, 25, 25) moved by the layer-energy and depth
        couplings (``value_layer``, ``value_depth``) of layer-energy excesses ``excess`` (B, Z)
        and layer energies ``target`` (B, Z) GeV."""
        if bool(self.value_layer.any()):  # (an exported graph has the term only if set)
            value = value + (hat @ self.value_layer).reshape(-1, *IMAGE_SHAPE) \
                * excess[:, None, None, :]
        if bool(self.value_depth.any()):  # (an exported graph has the term only if set)
            value = value + (hat @ self.value_depth).reshape(-1, *IMAGE_SHAPE) \
                * self._depth_excess(target, hat)[:, None, None, None]
        return value

    def _depth_excess(self, target: torch.Tensor, hat: torch.Tensor) -> torch.Tensor:
        """(B,): the depth excess ``sum_l l E_l / sum_l E_l - depth_mean(E)`` of layer energies
        ``target`` (B, Z) GeV, ``hat`` the prior-knot weights (B, K) of the showers' energies."""
        idx = torch.arange(IMAGE_SHAPE[2], dtype=target.dtype, device=target.device)  # constant
        total = target.sum(dim=1).clamp_min(float(self.cell_threshold_gev))
        return (target * idx).sum(dim=1) / total - hat @ self.depth_mean

    def _layer_rule(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The occupancy logits (B, X, Y, Z) made to agree with the layer energies ``target``
        (B, Z): a layer given less than the threshold fires no cell (its logits moved down until
        the largest is -1), a layer given at least the threshold fires at least one: if none
        would, its logits move up until the largest is exactly 0 (``x + (-x)`` is 0 in any
        rounding) and that cell -- by its index (an ArgMax and an integer comparison: exact under
        any rounding; the first of tied cells. In an INT8 graph a comparison with the layer's
        maximum lost the layer's energy in 7% of the layers of 3,000 showers, the ArgMax in 4%:
        what remains is the quantized logits before the firing test, not the rule) -- gets +1
        and takes the layer's energy. The shifts are constants to the gradient (training passes
        gradients through them to every cell, as before); the picked cell keeps its gradient
        while training.
        Why: the rescaling can give a fired cell no less than the threshold, so a library draw
        with an empty layer kept the cells that fired there at ~1e-6 GeV (layer 0 had a hit in
        74-76% of the showers at 10-150 GeV, the MC in 64-68%; its energy-fraction distribution
        carried the largest separation power of all features, 0.07), and a layer with energy but
        no fired cell lost it. (A first version lifted the largest logit to +1e-4 by adding
        ``1e-4 - top``, which bf16 rounds away, and which also fired any cell within 1e-4 of
        the top.) In the graph: an ArgMax (the maximum itself gathered at its index, not a
        second reduction), an integer comparison and a Where."""
        b, nx, ny, nz = logit.shape
        flat = logit.detach().reshape(b, nx * ny, nz)
        first = flat.argmax(dim=1, keepdim=True)                                  # (B, 1, Z)
        top = torch.gather(flat, 1, first)[:, 0]                # (B, Z): the layer's maximum
        off = target < float(self.cell_threshold_gev)
        need = (~off) & (top <= 0.0)
        shift = torch.where(off, torch.clamp(-1.0 - top, max=0.0),
                            torch.where(need, -top, torch.zeros_like(top)))
        shifted = logit + shift[:, None, None, :]
        cell = torch.arange(nx * ny, device=logit.device).reshape(1, -1, 1)
        top_cell = cell == first                                                  # (B, XY, Z)
        pick = (need[:, None, :] & top_cell).reshape(b, nx, ny, nz)
        if torch.is_grad_enabled() and shifted.requires_grad:  # same values, with a gradient
            return torch.where(pick, shifted - shifted.detach() + 1.0, shifted)
        return torch.where(pick, 1.0, shifted)

    def _cell_noise(self, z: torch.Tensor, channel: int, hat: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """The sparse head's full-resolution noise (B, 25, 25, 25) of ``channel`` (0 occupancy,
        1 energy): the latent's cell noise through that channel's index map, times its learned
        strength (the energy's made skewed per cell by ``noise_skew``:
        :func:`caloforge.gan.sparse.skewed_noise`, and, given the prior-knot weights ``hat``
        (B, K) of the showers' energies, scaled per energy by ``noise_val_knots``)."""
        cell_noise = z[:, GLOBAL_LATENT:PHASE_LATENT_DIM]
        n = cell_noise[:, self.noise_maps[channel]].reshape(-1, *IMAGE_SHAPE)
        if channel == 0:
            return self.noise_occ * n
        if hat is None or bool((self.noise_val_knots == 1).all()):
            return skewed_noise(n, self.noise_val, self.noise_skew)
        # the strength per shower: one MatMul of the knot weights with a constant table, times
        # the unit-strength skewed noise (its two per-cell constants fold in the graph)
        table = self.noise_val_knots * self.noise_val.reshape(1, -1)
        strength = (hat @ table).reshape(-1, *IMAGE_SHAPE)
        return strength * skewed_noise(n, torch.ones_like(self.noise_val), self.noise_skew)

    def fire_probability(self, z: torch.Tensor, energy: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """(showers in GeV, the probability that each cell fires), both (B, 25, 25, 25), of a
        sparse head; the probability is given the shower's latent vector but not the cell's own
        occupancy noise: ``Phi(logit without that noise / |noise strength|)`` (the noise numbers
        also feed the network at 7^3 / 14^3; that weak dependence is neglected). Smooth where a
        sample of showers gives 0/1 counts."""
        showers, fire, _ = self.fire_statistics(z, energy)
        return showers, fire

    def fire_statistics(self, z: torch.Tensor, energy: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`fire_probability` and, per layer (B, 25), the expected number of extra hits
        per unit shift of all its logits: ``sum phi(m / s) / s`` over its cells (``m`` the logit
        without the cell's occupancy noise, ``s`` that noise's strength)."""
        logit, value, target, width2 = self._sparse_inputs(z, energy, None)
        strength = self.noise_occ.abs().clamp_min(1e-6)
        m = (logit - self._cell_noise(z, 0)) / strength
        density = (torch.exp(-0.5 * m * m) / (math.sqrt(2.0 * math.pi) * strength)).sum(dim=(1, 2))
        showers = sparse_gev(logit, value, target, float(self.cell_threshold_gev), width2=width2)
        return showers, torch.special.ndtr(m), density

    def forward_log(self, z: torch.Tensor, energy: torch.Tensor,
                    layer_energies: torch.Tensor | None = None) -> torch.Tensor:
        """The log output ``u`` (> 0 where a cell fires, ``threshold x e^u`` its energy);
        rescaled per layer to ``layer_energies`` (B, 25) GeV when given (training: those of the
        real showers), else to the library's draw when the model has one, else as the network
        makes it."""
        return self.fake_parts(z, energy, layer_energies)[3]

    def forward(self, z: torch.Tensor, energy: torch.Tensor, log: bool = False,
                layer_energies: torch.Tensor | None = None, parts: bool = False) -> torch.Tensor:
        if parts:  # the training step's call through DistributedDataParallel
            return self.fake_parts(z, energy, layer_energies)  # type: ignore[return-value]
        if log:
            return self.forward_log(z, energy, layer_energies)
        if self.sparse:
            logit, value, target, width2 = self._sparse_inputs(z, energy, layer_energies)
            return sparse_gev(logit, value, target, float(self.cell_threshold_gev),
                              width2=width2)
        u = self._one_channel(z, energy, layer_energies)
        return generated_gev(torch.clamp(u, max=U_MAX), float(self.cell_threshold_gev))


class PhaseDiscriminator(nn.Module):
    """``forward(t, x, occ, energy)`` -> real/fake logit (B,). ``t`` transformed image, ``x`` GeV,
    ``occ`` occupancy, all (B, 25, 25, 25); ``energy`` (B,) GeV."""

    weights: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        sn = spectral_norm
        self.conv1 = sn(nn.Conv3d(1, 16, 4, stride=2, padding=1))    # 25 -> 12
        self.conv2 = sn(nn.Conv3d(16, 32, 4, stride=2, padding=1))   # 12 -> 6
        self.conv3 = sn(nn.Conv3d(32, 64, 3, stride=2, padding=1))   # 6 -> 3
        self.conv_out = sn(nn.Linear(64 * 27, 128))
        nf = n_features()
        self.feat1 = sn(nn.Linear(nf, 256))
        self.feat2 = sn(nn.Linear(256, 128))
        self.head1 = sn(nn.Linear(128 + 128 + 2, 256))
        self.head2 = sn(nn.Linear(256, 1))
        self.register_buffer("weights", torch.from_numpy(calibration_weights()))
        self.register_buffer("feature_mean", torch.zeros(nf))
        self.register_buffer("feature_std", torch.ones(nf))

    def features(self, x: torch.Tensor, occ: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        return shower_features(x, occ, energy, self.weights)

    def forward(self, t: torch.Tensor, feats: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(t.unsqueeze(1)), _SLOPE)
        h = F.leaky_relu(self.conv2(h), _SLOPE)
        h = F.leaky_relu(self.conv3(h), _SLOPE)
        hc = F.leaky_relu(self.conv_out(h.flatten(1)), _SLOPE)
        f = (feats - self.feature_mean) / self.feature_std
        hf = F.leaky_relu(self.feat2(F.leaky_relu(self.feat1(f), _SLOPE)), _SLOPE)
        h = torch.cat([hc, hf, _conditions(energy)], dim=1)
        return self.head2(F.leaky_relu(self.head1(h), _SLOPE)).squeeze(1)


def real_inputs(images_gev: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                    torch.Tensor]:
    """(t, x, occ) of data showers in GeV (cells below ``threshold`` are empty)."""
    occ = (images_gev >= threshold).to(images_gev.dtype)
    return to_log(images_gev, threshold), images_gev * occ, occ


def fake_inputs(u: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
    """(t, x, occ) of generator outputs ``u``, with gradients (straight-through occupancy)."""
    return generated_log(u), generated_gev(u, threshold), occupancy(u)
