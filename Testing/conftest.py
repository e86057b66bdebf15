"""Shared fixtures: a tiny random-weight model card, the bundled sample case, small synthetic cases."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

ROOT = Path(__file__).resolve().parents[1]
# One thread count for the tests and every engine process they start: in bfloat16 the channels-last network
# splits its sums by thread, so runs compared voxel for voxel must use the same count.
THREADS = min(2, os.cpu_count() or 1)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)  # N4's result depends on ITK's thread count too

from braintumorseg.labels import REGIONS  # noqa: E402
from braintumorseg.modelcard import ModelCard, export_model  # noqa: E402
from braintumorseg.network import ArchitectureSpec, build_network  # noqa: E402
from braintumorseg.resources import sample_case  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def make_tiny_card(directory: Path, spacing: float = 4.0, seed: int = 0, name: str = "tiny-test") -> ModelCard:
    """Export a SegResNet with 8 filters and random weights: exercises every step in well under a second."""
    torch.manual_seed(seed)
    spec = ArchitectureSpec("SegResNet", dict(spatial_dims=3, in_channels=4, out_channels=len(REGIONS),
                                              init_filters=8, blocks_down=[1, 1], blocks_up=[1]))
    card = ModelCard(name=name, version="0.0.1", architecture=spec, spacing=[spacing] * 3,
                     roi_size=[64, 64, 64], divisible_by=2)
    return export_model(build_network(spec), card, directory)


@pytest.fixture(autouse=True)
def same_threads_after_each_test():
    """A test that runs a command with --threads in this process does not change the next test's count."""
    yield
    torch.set_num_threads(THREADS)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(THREADS)


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory) -> ModelCard:
    return make_tiny_card(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def sample() -> dict[str, Path]:
    """The bundled sample case: t1, t1c, t2, flair and its consensus 'label'."""
    return sample_case()


def write_label_maps(directory: Path, arrays: dict[str, np.ndarray], spacing) -> dict[str, Path]:
    """Write (z, y, x) label arrays as NIfTI files named after their keys, with the given (x, y, z) spacing."""
    paths = {}
    for name, array in arrays.items():
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        paths[name] = directory / f"{name}.nii.gz"
        sitk.WriteImage(image, str(paths[name]))
    return paths


def synthetic_case(directory: Path, shape=(40, 48, 44), spacing=(2.0, 2.0, 2.0), seed: int = 0) -> dict[str, Path]:
    """A skull-stripped ellipsoid 'brain' with a bright lesion, four modalities, written as NIfTI."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = (z ** 2 + y ** 2 + x ** 2) < 0.8
    lesion = ((z - 0.2) ** 2 + (y + 0.1) ** 2 + x ** 2) < 0.08
    paths = {}
    for index, modality in enumerate(("t1", "t1c", "t2", "flair")):
        array = np.where(brain, 400 + 50 * index + rng.normal(0, 20, shape), 0)
        array = np.where(lesion, array * 1.8, array).astype(np.float32)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin((-40.0, -48.0, -44.0))
        paths[modality] = directory / f"case_{modality}.nii.gz"
        sitk.WriteImage(image, str(paths[modality]))
    return paths


@pytest.fixture
def synthetic(tmp_path) -> dict[str, Path]:
    return synthetic_case(tmp_path)
