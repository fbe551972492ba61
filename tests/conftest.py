"""Shared fixtures: small Monte Carlo samples made with caloforge's own GFlash simulation."""

from __future__ import annotations

import numpy as np
import pytest

#: Energies (GeV) cycled over the events of ``mc_small``.
MC_SMALL_ENERGIES = (10.0, 50.0, 100.0)
MC_SMALL_N = 200
MC_SMALL_SEED = 1234


@pytest.fixture(scope="session")
def mc_small_bookkeeping():
    """``(images, energies, bookkeeping)`` of :data:`MC_SMALL_N` CLIC-ECAL showers at energies
    cycled over :data:`MC_SMALL_ENERGIES` (see ``caloforge.mc.simulate(return_bookkeeping=True)``)."""
    from caloforge.mc import simulate

    energies = np.resize(np.array(MC_SMALL_ENERGIES), MC_SMALL_N)
    images, energies, book = simulate(energies, seed=MC_SMALL_SEED, return_bookkeeping=True)
    images.setflags(write=False)
    energies.setflags(write=False)
    return images, energies, book


@pytest.fixture(scope="session")
def mc_small(mc_small_bookkeeping):
    """``(images, energies)``: 200 showers, float32 (200, 25, 25, 25) GeV and float64 (200,) GeV,
    energies cycled over 10, 50, 100 GeV. Read-only arrays: copy before modifying."""
    images, energies, _ = mc_small_bookkeeping
    return images, energies


@pytest.fixture(scope="session")
def mc_file(tmp_path_factory):
    """Path of a small 3DGAN-layout HDF5 file: 96 showers at 10, 50, 100 GeV (cycled), seed 7,
    written by ``caloforge.mc.simulate_to_file`` (``ECAL`` + ``energy``, GeV, with attributes)."""
    from caloforge.mc import simulate_to_file

    path = tmp_path_factory.mktemp("mc") / "showers_3dgan.h5"
    simulate_to_file(path, 96, energies=np.array(MC_SMALL_ENERGIES), seed=7, chunk_size=32,
                     progress=False)
    return path


@pytest.fixture(scope="session")
def library_generator():
    """``make(path, entries)``: an untrained phase generator (seed 5) with the sparse head, the
    layer-occupancy coupling and a two-knot layer-energy library built from the MC file
    ``path``, its log energies well above the threshold (8.0, as a data prior puts them: the
    softplus is linear there and the rescaling sets the layer energies), in eval mode -- the
    starting point of the calibration tests."""
    import torch

    from caloforge.gan.layers import build_library
    from caloforge.gan.phase import PhaseGenerator

    def make(path, entries: int) -> PhaseGenerator:
        torch.manual_seed(5)
        gen = PhaseGenerator(layer_library=(2, entries), sparse=True, layer_occupancy=True)
        lib = build_library(path, 1e-6, knots=2, entries=entries)
        assert gen.layers is not None
        gen.layers.fill(*(torch.as_tensor(lib[k]) for k in ("table", "counts", "knots")))
        with torch.no_grad():
            gen.prior_sparse[1].fill_(8.0)
        return gen.eval()

    return make


@pytest.fixture(autouse=True, scope="session")
def _isolated_int8_cache(tmp_path_factory):
    """Tests never read or write the user's INT8 cache (~/.cache/caloforge): one temporary cache
    for the session, so cached models from another version or a user's runs cannot leak in."""
    import os

    old = os.environ.get("CALOFORGE_CACHE")
    os.environ["CALOFORGE_CACHE"] = str(tmp_path_factory.mktemp("int8-cache"))
    yield
    if old is None:
        os.environ.pop("CALOFORGE_CACHE", None)
    else:
        os.environ["CALOFORGE_CACHE"] = old


@pytest.fixture(autouse=True, scope="session")
def _reference_3dgan_for_tests_measured_on_it():
    """The runtime, quantization and demo tests were written, and their bounds measured, on the
    reference 3DGAN as "the shipped model" (latent 200, its conv layers, its INT8 errors). When
    another architecture is the default (a ``phase`` model; or ``CALOFORGE_DEFAULT_MODEL_DIR``
    naming one), they run on the package's trained reference 3DGAN
    (:func:`caloforge.gan.shipped.reference_3dgan_dir`) instead. The default itself is checked
    by tests/test_gan_shipped.py (which takes the default directory at import, before this
    fixture), the phase path by tests/test_runtime_phase.py and tests/test_ship_phase.py."""
    import os

    from caloforge.errors import UserError
    from caloforge.gan.shipped import (
        DIR_ENV,
        default_architecture,
        default_model_card,
        reference_3dgan_dir,
    )

    old = os.environ.get(DIR_ENV)
    try:
        arch = default_architecture(default_model_card())
    except UserError:
        arch = None
    ref = reference_3dgan_dir() if arch != "3dgan" else None
    if ref is not None:
        os.environ[DIR_ENV] = str(ref)
    yield
    if old is None:
        os.environ.pop(DIR_ENV, None)
    else:
        os.environ[DIR_ENV] = old
