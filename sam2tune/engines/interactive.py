"""Inferers for interactive SAM2: training with corrective clicks, and the deterministic click protocol.

Both hand the label to the network's forward (``correction_target``), which runs the image encoder once and the
prompt encoder + mask decoder once per round (``sam2tune.networks.interactive.decode_rounds``); going through
``forward`` keeps DistributedDataParallel's gradient hooks in play. The label reaches the inferer through
``PromptPrepareBatch(pass_label=True)``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import Inferer
from monai.metrics import compute_dice, compute_iou
from torch import nn

from sam2tune.networks.interactive import decode_rounds
from sam2tune.prompts.corrections import CLICK_MODES, sample_error_clicks
from sam2tune.utils.dist import unwrap
from sam2tune.utils.flags import as_bool

# the first prompts InteractiveInferer simulates (see its ``first_prompt``)
FIRST_PROMPTS = ("box", "click", "mixed")


def _count(value, key: str) -> int:
    """An int >= 0 from JSON or the command line ("3" too); ValueError naming ``key`` otherwise."""
    try:
        number = int(value) if not isinstance(value, (bool, float)) or float(value).is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < 0:
        raise ValueError(f"{key} must be an integer >= 0 (e.g. --{key} 7), got {value!r}.")
    return number


def _click_first(prompts: dict, label: torch.Tensor, use_click: torch.Tensor, mode: str) -> dict:
    """Replace the box of the samples in ``use_click`` (B,) bool by one positive click on the object (label > 0.5)."""
    truth = label > 0.5
    pts, labs = sample_error_clicks(torch.zeros_like(truth), truth, mode)  # the whole object is "missed"
    labs = torch.where(use_click[:, None], labs, torch.full_like(labs, -1))  # box samples: a padding point
    out = dict(prompts)
    if out.get("boxes") is not None:
        out["boxes"] = torch.where(use_click[:, None], torch.full_like(out["boxes"], float("nan")),
                                   out["boxes"].float())
    if out.get("point_coords") is not None:
        out["point_coords"] = torch.cat([out["point_coords"].float(), pts], 1)
        out["point_labels"] = torch.cat([out["point_labels"].to(labs.dtype), labs], 1)
    else:
        out["point_coords"], out["point_labels"] = pts, labs
    return out


def _flatten_stack(inputs: torch.Tensor, label: torch.Tensor | None, prompts: dict) -> tuple:
    """Slice stacks (B, S, H, W) + label (B, S, H, W) -> single slices (B*S, 1, H, W), prompts repeated per slice."""
    if inputs.ndim != 4:
        raise ValueError(f"Slice stacks must be (B, S, H, W), got shape {tuple(inputs.shape)}.")
    b, n = inputs.shape[:2]
    flat = {k: v.repeat_interleave(n, 0) if torch.is_tensor(v) and v.shape[:1] == (b,) else v
            for k, v in prompts.items()}
    lab = None if label is None else label.reshape(b * n, 1, *label.shape[-2:])
    return inputs.reshape(b * n, 1, *inputs.shape[-2:]), lab, flat


class InteractiveInferer(Inferer):
    """First prompt (box, click or either) + ``correction_rounds`` corrective clicks -> logits of every round.

    The rounds run inside the network's forward (``correction_target=``), so the image encoder runs once per batch
    and DistributedDataParallel sees one forward. Called, it returns logits (B, correction_rounds + 1, H, W),
    channel r = after r corrective clicks (``__call__``).

    Args:
        correction_rounds: corrective clicks per sample after the first prompt, an int >= 0 ("3" from the command
            line too); 0 with a box first prompt = one plain ``network(inputs, **prompts)`` call, as SimpleInferer.
        first_prompt: "box" (the simulated box from the transforms), "click" (one click on the object, placed by
            ``click_mode``, instead of the box) or "mixed" (a click with probability ``click_prob``, per sample).
        click_prob: probability of a click first prompt in "mixed" mode, in [0, 1].
        click_mode: how corrective (and first) clicks are placed, one of ``sam2tune.prompts.CLICK_MODES``:
            "uniform" (random error pixel, training), "center" (the error-centre rule, evaluation), "suggest" or
            "boundary" (simulated users of the app's suggestion).
        stacked: inputs and labels are slice stacks (B, S, H, W) (the lung bundle): every slice runs as its own
            image with the sample's prompts, and gets its own clicks. Any ``sam2tune.utils.as_bool`` value.

    Raises:
        ValueError: when ``correction_rounds`` is not an integer >= 0, ``first_prompt`` is not in
            ``FIRST_PROMPTS``, ``click_prob`` is outside [0, 1], ``click_mode`` is not a click mode, or ``stacked``
            is not a boolean.
    """

    def __init__(self, correction_rounds: int = 0, first_prompt: str = "box", click_prob: float = 0.5,
                 click_mode: str = "uniform", stacked: bool = False) -> None:
        super().__init__()
        correction_rounds = _count(correction_rounds, "correction_rounds")
        if first_prompt not in FIRST_PROMPTS:
            raise ValueError(f"first_prompt must be one of {FIRST_PROMPTS}, got {first_prompt!r}.")
        if not 0.0 <= float(click_prob) <= 1.0:
            raise ValueError(f"click_prob must be in [0, 1], got {click_prob!r}.")
        if click_mode not in CLICK_MODES:
            raise ValueError(f"click_mode must be one of {CLICK_MODES}, got {click_mode!r}.")
        self.correction_rounds, self.first_prompt = correction_rounds, first_prompt
        self.click_prob, self.click_mode, self.stacked = float(click_prob), click_mode, as_bool(stacked, "stacked")

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None,
                 **prompts) -> torch.Tensor:
        """Run the first prompt and the corrective rounds on a batch.

        Args:
            inputs: (B, C, H, W) images in [0, 1]; stacked: (B, S, H, W) slice stacks.
            network: the ``sam2tune.networks.SAM2Segmenter`` (DDP-wrapped or not).
            *args: extra positional arguments from the engine, passed on to the network.
            label: (B, 1, H, W) true mask (> 0.5 = object; only channel 0 is used), stacked (B, S, H, W), from
                ``PromptPrepareBatch(pass_label=True)``; needed unless ``correction_rounds`` is 0 and the first
                prompt is "box".
            **prompts: the network's prompt keywords (``PromptPrepareBatch``): ``boxes`` (B, 4) xyxy,
                ``point_coords`` (B, P, 2) xy (both in input pixels), ``point_labels`` (B, P), ``mask_prompt``
                (B, 1, H, W), ``features`` (cached image embeddings); stacked, each tensor whose first dim is B is
                repeated for the S slices of its sample.

        Returns:
            Logits (B, correction_rounds + 1, H, W), channel r = after r corrective clicks; with
            ``correction_rounds=0`` and a box first prompt, exactly ``network(inputs, *args, **prompts)``
            (B, K, H, W). Stacked: (B, correction_rounds + 1, S, H, W) (K for the plain call).

        Raises:
            ValueError: when clicks are needed and ``label`` is None, or stacked inputs are not 4D.
        """
        if self.stacked:
            b, n = inputs.shape[:2]
            flat, lab, kw = _flatten_stack(inputs, label, prompts)
            out = self._rounds(flat, network, *args, label=lab, **kw)  # (B*S, R+1, H, W)
            return out.reshape(b, n, *out.shape[1:]).transpose(1, 2)
        return self._rounds(inputs, network, *args, label=label, **prompts)

    def _rounds(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None,
                **prompts) -> torch.Tensor:
        if self.correction_rounds == 0 and self.first_prompt == "box":
            return network(inputs, *args, **prompts)
        if label is None:
            raise ValueError(
                "Corrective clicks and click first prompts need the label: use PromptPrepareBatch(pass_label=True)."
            )
        label = label[:, :1].float()
        if self.first_prompt != "box":
            b = inputs.shape[0]
            if self.first_prompt == "click":
                use_click = torch.ones(b, dtype=torch.bool, device=label.device)
            else:  # torch's global generator: restored on resume with the run's other random state
                use_click = torch.rand(b).to(label.device) < self.click_prob
            prompts = _click_first(prompts, label, use_click, self.click_mode)
        return network(inputs, *args, **prompts, correction_target=label, correction_rounds=self.correction_rounds,
                       click_mode=self.click_mode)


def _overlap(logits: torch.Tensor, label: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits (B, K, H, W), label (B, 1, H, W) -> (IoU (B, K), Dice (B, K)); NaN where the label is empty."""
    pred = (logits > 0).double()
    truth = (label > 0.5).double().expand_as(pred)  # each of the K candidates against the one label
    iou = compute_iou(pred, truth, include_background=True, ignore_empty=True)
    dice = compute_dice(pred, truth, include_background=True, ignore_empty=True)
    return iou.cpu().numpy(), dice.cpu().numpy()


# ClickProtocolInferer's simulated users -> the click mode that places their clicks
USERS = {"oracle": "center", "suggest": "suggest", "boundary": "boundary"}


class ClickProtocolInferer(InteractiveInferer):
    """The deterministic click protocol: the bundle's first prompt, then ``max_clicks`` corrective clicks.

    With ``user="oracle"`` each click goes to the pixel farthest from the border of the largest error region
    (positive for a miss, negative for a false positive) — the RITM / SimpleClick rule, which needs the ground
    truth. ``user="suggest"`` clicks where the app's ``suggest_click`` points (the model's own uncertainty, no ground
    truth) and ``user="boundary"`` a random pixel of the predicted border (baseline); both answer with the true label
    at that pixel. Every click keeps the earlier ones and feeds the previous mask back. The IoU and Dice of every step
    (and, for suggest / boundary, whether each click fell on a wrong pixel) are kept in ``last`` for
    ``sam2tune.handlers.ClickProtocolReport``.

    Called, it returns the logits after the last click (``__call__``), so the evaluator's usual metrics still run.

    Args:
        max_clicks: corrective clicks per object, an int >= 0 (20, the NoC cap of the interactive-segmentation
            literature).
        first_prompt: "box" (the bundle's evaluation prompt) or "click" (one centre click instead).
        user: "oracle", "suggest" or "boundary" (see above; the keys of ``USERS``).
        stacked: slice stacks (B, S, H, W): every slice with a non-empty label is one object (empty slices get NaN
            IoU / Dice). Any ``sam2tune.utils.as_bool`` value.

    Raises:
        ValueError: when ``first_prompt`` is "mixed" or not in ``FIRST_PROMPTS``, ``user`` is unknown,
            ``max_clicks`` is not an integer >= 0, or ``stacked`` is not a boolean.
    """

    def __init__(self, max_clicks: int = 20, first_prompt: str = "box", user: str = "oracle",
                 stacked: bool = False) -> None:
        if first_prompt == "mixed":
            raise ValueError("The click protocol is deterministic: first_prompt must be 'box' or 'click'.")
        if user not in USERS:
            raise ValueError(f"user must be one of {sorted(USERS)}, got {user!r}.")
        super().__init__(_count(max_clicks, "max_clicks"), first_prompt, 0.0, USERS[user], stacked)
        self.max_clicks, self.user = self.correction_rounds, user
        self.last: dict[str, np.ndarray] = {}

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor | None = None,
                 **prompts) -> torch.Tensor:
        """Run the click protocol on a batch and keep every step's IoU / Dice in ``last``.

        ``last`` becomes {"iou": (N, max_clicks + 1), "dice": (N, max_clicks + 1)} float arrays (NaN for an empty
        label), with "in_error" (N, max_clicks) (1.0 = the click fell on a wrong pixel, NaN = no suggestion) for
        the suggest / boundary users, and, stacked, "item" / "object" (the sample index and "slice<i>" of each of
        the N = B * S objects); N = B otherwise.

        Args:
            inputs: (B, C, H, W) images in [0, 1]; stacked: (B, S, H, W) slice stacks.
            network: the ``sam2tune.networks.SAM2Segmenter`` (DDP-wrapped or not; it is unwrapped and its
                ``encode`` / decoder are called directly).
            *args: extra positional arguments from the engine (not used).
            label: (B, 1, H, W) true mask (> 0.5 = object; only channel 0 is used), stacked (B, S, H, W), from
                ``PromptPrepareBatch(pass_label=True)``.
            **prompts: the first prompt: ``boxes`` (B, 4) xyxy, ``point_coords`` (B, P, 2) xy, ``point_labels``
                (B, P), ``mask_prompt`` (B, 1, H, W), in input pixels, and optionally ``features`` (cached image
                embeddings); stacked, each tensor whose first dim is B is repeated for the S slices of its sample.

        Returns:
            Logits (B, 1, H, W) after the last click; stacked: (B, S, H, W).

        Raises:
            ValueError: when ``label`` is None, or stacked inputs are not 4D.
        """
        if label is None:
            raise ValueError("The click protocol needs the label: use PromptPrepareBatch(pass_label=True).")
        if self.stacked:
            b, n = inputs.shape[:2]
            flat, lab, kw = _flatten_stack(inputs, label, prompts)
            out = self._protocol(flat, network, *args, label=lab, **kw)
            self.last["item"] = [i // n for i in range(b * n)]
            self.last["object"] = [f"slice{i % n}" for i in range(b * n)]
            return out.reshape(b, n, *out.shape[-2:])
        return self._protocol(inputs, network, *args, label=label, **prompts)

    def _protocol(self, inputs: torch.Tensor, network: nn.Module, *args, label: torch.Tensor,
                  **prompts) -> torch.Tensor:
        label = label[:, :1].float()
        if self.first_prompt == "click":
            prompts = _click_first(prompts, label, torch.ones(label.shape[0], dtype=torch.bool, device=label.device),
                                   "center")
        net = unwrap(network)
        features = prompts.pop("features", None)
        features = net.encode(inputs) if features is None else features
        clicks: list = []
        logits = decode_rounds(net, features, label, self.max_clicks, tuple(inputs.shape[-2:]),
                               click_mode=self.click_mode, clicks=clicks,
                               **{k: prompts.get(k) for k in ("boxes", "point_coords", "point_labels", "mask_prompt")})
        iou, dice = _overlap(logits, label)
        self.last = {"iou": iou, "dice": dice}
        if self.user != "oracle" and clicks:
            truth = label[:, 0] > 0.5
            hits = np.full((label.shape[0], len(clicks)), np.nan)
            for r, (pts, labs) in enumerate(clicks):
                for b in range(label.shape[0]):
                    if labs[b, 0] < 0:
                        continue  # no suggestion: the model was sure everywhere
                    x, y = (int(v) for v in pts[b, 0].tolist())
                    hits[b, r] = float(bool(logits[b, r, y, x] > 0) != bool(truth[b, y, x]))
            self.last["in_error"] = hits
        return logits[:, -1:]


__all__ = ["FIRST_PROMPTS", "USERS", "ClickProtocolInferer", "InteractiveInferer"]
