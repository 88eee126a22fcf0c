"""Monte-Carlo dropout inference on slice stacks: N stochastic passes -> mean probability and an uncertainty map."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from torch import nn

from sam2tune.engines.slice_stack import run_slice_stack
from sam2tune.metrics.calibration import binary_entropy
from sam2tune.networks.mc_dropout import mc_dropout_predict

UNCERTAINTIES = ("entropy", "std")


class _StackNet(nn.Module):
    """Wraps a 2D network so that mc_dropout_predict can call it on (B, S, H, W) stacks."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    @property
    def image_encoder_module(self) -> nn.Module | None:
        return getattr(self.network, "image_encoder_module", None)

    def encode(self, x: torch.Tensor) -> dict:
        """(B, S, H, W) stacks -> the network's encoding of their B*S slices (what ``forward(features=)`` takes)."""
        b, s, h, w = x.shape
        return self.network.encode(x.reshape(b * s, 1, h, w))

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return run_slice_stack(self.network, x, **kwargs)


def mc_stack_predict(
    network: nn.Module, inputs: torch.Tensor, num_samples: int, uncertainty: str = "entropy", **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S, H, W) stacks -> (mean probability, uncertainty), each (B, S, H, W), from `num_samples` MC-dropout passes.

    uncertainty "entropy": predictive entropy of the mean probability (bits, in [0, 1]; defined for one pass too);
    "std": standard deviation of the passes' probabilities (0 everywhere when the network has no active dropout).
    """
    if uncertainty not in UNCERTAINTIES:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {uncertainty!r}.")
    # The wrapper copies the network's mode: mc_dropout restores that mode on the whole wrapped network afterwards.
    wrapper = _StackNet(network).train(network.training)
    mean, var = mc_dropout_predict(wrapper, num_samples, inputs, **kwargs)
    return mean, binary_entropy(mean) if uncertainty == "entropy" else var.sqrt()


class MCDropoutInferer(Inferer):
    """MONAI inferer: (B, S, H, W) -> (B, 2S, H, W) = [mean probability | uncertainty] (split by SplitUncertaintyd).

    Args:
        num_samples: stochastic passes (1 = one pass; deterministic when the network has no dropout).
        uncertainty: "entropy" or "std" (see `mc_stack_predict`).
    """

    def __init__(self, num_samples: int = 10, uncertainty: str = "entropy") -> None:
        super().__init__()
        if uncertainty not in UNCERTAINTIES:
            raise ValueError(f"uncertainty must be one of {UNCERTAINTIES}, got {uncertainty!r}.")
        self.num_samples, self.uncertainty = int(num_samples), uncertainty

    def __call__(
        self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """(B, S, H, W) -> (B, 2S, H, W); a ``label`` handed over by PromptPrepareBatch(pass_label=True) is not used."""
        mean, unc = mc_stack_predict(network, inputs, self.num_samples, self.uncertainty, **kwargs)
        return torch.cat([mean, unc], 1)
