"""3DGAN energy-conditioned generator and discriminator in PyTorch.

Architecture after the CERN 3DGAN (energy-only variant): Khattak et al., "Fast simulation of a
high granularity calorimeter by generative adversarial networks", EPJC 82 (2022) 386, and the
public svalleco/3Dgan repository (facts summarised in ``shared/reference/3dgan.md``).
Differences from the original, on purpose:

* BatchNorm normalises over the channel axis (the Keras original used axis -1 under
  channels-first and so normalised over a spatial axis).
* The generator takes the latent noise and the primary energy in GeV as two inputs and applies
  the multiplicative conditioning ``z * E/100`` inside the graph, so an exported ONNX model is fed
  energies directly.
* The generator's last layer produces an image in internal units; ``image_scale`` (a buffer,
  stored with the weights) converts to GeV: ``image_GeV = raw / image_scale``. Training works on
  the scaled image (cells of O(1)) and the exported model outputs GeV.

Image axes are (x, y, z) with z the layer (beam) axis, as in the 3DGAN files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from caloforge.facts import IMAGE_SHAPE, LATENT_DIM

ENERGY_SCALE_GEV = 100.0  # 3DGAN conditioning: E / 100


class Generator(nn.Module):
    """Energy-conditioned 3D convolutional generator (872,948 parameters + BN statistics).

    ``forward(z, energy)``: ``z`` (B, 200) standard normal, ``energy`` (B,) primary energy in GeV;
    returns (B, 25, 25, 25) visible cell energies in GeV (non-negative: final ReLU).
    """

    def __init__(self, latent_dim: int = LATENT_DIM, image_scale: float = 100.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.dense = nn.Linear(latent_dim, 8 * 7 * 7 * 8)
        self.conv1 = nn.Conv3d(8, 64, kernel_size=(6, 6, 8), padding="same")
        self.bn1 = nn.BatchNorm3d(64, eps=1e-3, momentum=0.01)
        self.conv2 = nn.Conv3d(64, 6, kernel_size=(6, 5, 8))
        self.bn2 = nn.BatchNorm3d(6, eps=1e-3, momentum=0.01)
        self.conv3 = nn.Conv3d(6, 6, kernel_size=(3, 3, 8))
        self.conv4 = nn.Conv3d(6, 1, kernel_size=(2, 2, 2), bias=False)
        self.register_buffer("image_scale", torch.tensor(float(image_scale)))
        # Optional shower prior (caloforge addition, off by default = the reference model): the
        # output is multiplied by prior * (E/100)**prior_energy_power. Neutral (ones, power 0)
        # unless set by set_prior(); see docs/gan.md.
        self.register_buffer("prior", torch.ones(IMAGE_SHAPE))
        self.register_buffer("prior_energy_power", torch.tensor(0.0))

    def set_prior(self, mean_image_per_100gev: torch.Tensor, energy_power: float = 1.0) -> None:
        """Use a data-derived mean shower (internal units per 100 GeV of primary energy, shape
        (25, 25, 25)) as a multiplicative prior: the network then learns the per-cell,
        per-event correction factor around the mean shower scaled by (E/100)**energy_power."""
        with torch.no_grad():
            self.prior.copy_(mean_image_per_100gev.reshape(IMAGE_SHAPE))
            self.prior_energy_power.fill_(float(energy_power))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # files written before the prior existed: neutral prior
        if prefix + "dense.weight" in state_dict:
            state_dict.setdefault(prefix + "prior", torch.ones(IMAGE_SHAPE))
            state_dict.setdefault(prefix + "prior_energy_power", torch.tensor(0.0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_scaled(self, z: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """Image in internal (training) units, shape (B, 1, 25, 25, 25)."""
        x = z * (energy.reshape(-1, 1) / ENERGY_SCALE_GEV)
        x = self.dense(x).reshape(-1, 8, 7, 7, 8)
        if torch.is_autocast_enabled(x.device.type):
            # AMX-BF16 gives wrong results for this conv (8 input channels, kernel depth 8) on
            # this CPU (shared/reference/cpu-inference.md): keep it in float32 under autocast.
            with torch.autocast(x.device.type, enabled=False):
                x = self.conv1(x.float())
        else:
            x = self.conv1(x)
        x = self.bn1(F.leaky_relu(x, 0.3))
        x = F.interpolate(x, scale_factor=(2, 2, 2), mode="nearest")
        x = F.pad(x, (0, 0, 2, 2, 2, 2))  # pad (x, y) by 2, z by 0 -> (18, 18, 16)
        x = self.bn2(F.leaky_relu(self.conv2(x), 0.3))  # -> (13, 14, 9)
        x = F.interpolate(x, scale_factor=(2, 2, 3), mode="nearest")  # -> (26, 28, 27)
        x = F.pad(x, (3, 3, 0, 0, 1, 1))  # x by 1, y by 0, z by 3 -> (28, 28, 33)
        x = F.leaky_relu(self.conv3(x), 0.3)  # -> (26, 26, 26)
        x = F.relu(self.conv4(x))  # -> (25, 25, 25)
        scale = (energy.reshape(-1, 1, 1, 1, 1) / ENERGY_SCALE_GEV) ** self.prior_energy_power
        return x * self.prior * scale

    def forward(self, z: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        return self.forward_scaled(z, energy)[:, 0] / self.image_scale


class Discriminator(nn.Module):
    """3DGAN discriminator (73,450 parameters + BN statistics).

    ``forward(image)`` with ``image`` (B, 25, 25, 25) in training units returns
    ``(p_real (B,), energy_regression (B,) in units of 100 GeV, ecal_sum (B,))``.
    """

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 32, 5, padding="same")
        self.conv2 = nn.Conv3d(32, 8, 5)
        self.bn2 = nn.BatchNorm3d(8, eps=1e-3, momentum=0.01)
        self.conv3 = nn.Conv3d(8, 8, 5)
        self.bn3 = nn.BatchNorm3d(8, eps=1e-3, momentum=0.01)
        self.conv4 = nn.Conv3d(8, 8, 5)
        self.bn4 = nn.BatchNorm3d(8, eps=1e-3, momentum=0.01)
        self.drop = nn.Dropout(dropout)
        self.real_fake = nn.Linear(8 * 11 * 11 * 11, 1)
        self.energy = nn.Linear(8 * 11 * 11 * 11, 1)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        x = image.unsqueeze(1)
        x = self.drop(F.leaky_relu(self.conv1(x), 0.3))
        x = self.drop(self.bn2(F.leaky_relu(self.conv2(F.pad(x, (2,) * 6)), 0.3)))  # 25
        x = self.drop(self.bn3(F.leaky_relu(self.conv3(F.pad(x, (2,) * 6)), 0.3)))  # 25
        x = self.drop(self.bn4(F.leaky_relu(self.conv4(F.pad(x, (1,) * 6)), 0.3)))  # 23
        x = F.avg_pool3d(x, 2)  # 11
        return x.flatten(1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.features(image)
        p_real = torch.sigmoid(self.real_fake(h)).squeeze(1)
        energy = self.energy(h).squeeze(1)
        ecal = image.sum(dim=(1, 2, 3))
        return p_real, energy, ecal


def count_parameters(module: nn.Module, include_bn_statistics: bool = True) -> int:
    """Trainable parameters, plus BatchNorm running mean/variance when asked.

    Keras (the original 3DGAN) counts the BN moving statistics as (non-trainable) parameters,
    so the reference figures (generator 872,948; discriminator 73,450) include them.
    """
    n = sum(p.numel() for p in module.parameters())
    if include_bn_statistics:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n += m.running_mean.numel() + m.running_var.numel()
    return n
