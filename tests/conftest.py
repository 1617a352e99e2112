"""Shared pytest set-up: the `gpu` and `torch` markers skip where their hardware/library is absent."""
import importlib.util

import numpy as np
import pytest

from minichinchilla.backend import cupy_available

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_GPU = cupy_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU where CuPy really runs")
    skip_torch = pytest.mark.skip(reason="PyTorch is not installed (pip install torch==2.13.0)")
    for item in items:
        if "gpu" in item.keywords and not HAS_GPU:
            item.add_marker(skip_gpu)
        if "torch" in item.keywords and not HAS_TORCH:
            item.add_marker(skip_torch)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
