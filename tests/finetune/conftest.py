"""Shared fixtures for the fine-tuning tests: one tiny SAM2 at 64 px per session, deep-copied per test."""

import copy

import pytest
import torch

from sam2tune.networks import SAM2Segmenter


@pytest.fixture(scope="session")
def tiny_base() -> SAM2Segmenter:
    """A plain random-init tiny SAM2Segmenter at 64 px. Never mutate it: use the `base` fixture."""
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64).eval()


@pytest.fixture
def base(tiny_base) -> SAM2Segmenter:
    """A private deep copy of the session's tiny base."""
    return copy.deepcopy(tiny_base)


@pytest.fixture(scope="session")
def batch() -> dict[str, torch.Tensor]:
    """One 64x64 RGB image with a box prompt."""
    g = torch.Generator().manual_seed(1)
    return {"image": torch.rand(1, 3, 64, 64, generator=g), "boxes": torch.tensor([[10.0, 12.0, 44.0, 50.0]])}


@pytest.fixture(scope="session")
def perturb():
    """Function: add seeded noise to every trainable parameter (makes LoRA / adapter deltas non-zero)."""

    def _perturb(network: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in network.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=g) * scale)
        return network

    return _perturb
