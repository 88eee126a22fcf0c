"""GradientClipping clips the global norm before the optimizer step, only on stepping iterations."""

from types import SimpleNamespace

import pytest
import torch

from sam2tune.handlers import GradientClipping


def _engine(acc=1, iteration=1, epoch_length=4):
    p = torch.nn.Parameter(torch.zeros(10))
    p.grad = torch.full((10,), 10.0)
    opt = torch.optim.SGD([p], lr=0.1)
    return SimpleNamespace(optimizer=opt, accumulation_steps=acc, amp=False, scaler=None,
                           state=SimpleNamespace(iteration=iteration, epoch_length=epoch_length)), p


def test_clips_to_max_norm():
    engine, p = _engine()
    GradientClipping(max_norm=1.0)(engine)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)
    assert engine.state.grad_norm == pytest.approx(float(torch.linalg.vector_norm(torch.full((10,), 10.0))), rel=1e-5)


def test_skips_accumulating_iterations():
    engine, p = _engine(acc=2, iteration=1)
    GradientClipping(max_norm=1.0)(engine)
    assert torch.linalg.vector_norm(p.grad).item() > 30  # untouched: no optimizer step on this iteration
    engine, p = _engine(acc=2, iteration=2)
    GradientClipping(max_norm=1.0)(engine)
    assert torch.linalg.vector_norm(p.grad).item() == pytest.approx(1.0, rel=1e-5)


def test_bad_max_norm():
    with pytest.raises(ValueError, match="grad_clip"):
        GradientClipping(max_norm=0)
