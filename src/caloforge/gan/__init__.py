"""The conditional 3D GAN (3DGAN energy-only variant): models, training, export, default model."""

from caloforge.gan.model import LATENT_DIM, Discriminator, Generator

__all__ = ["LATENT_DIM", "Discriminator", "Generator"]
