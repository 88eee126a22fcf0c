"""Batch preparation that hands simulated prompts to the network as keyword arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.engines.utils import PrepareBatch
from monai.utils import CommonKeys

from sam2tune.utils.flags import as_bool

# network keyword -> data-dict key written by the prompt transforms
PROMPT_KEYS: dict[str, str] = {"boxes": "box", "point_coords": "point_coords", "point_labels": "point_labels",
                               "mask_prompt": "mask_prompt"}


class PromptPrepareBatch(PrepareBatch):
    """Return (image, label, (), prompts) for MONAI engines; `prompts` picks which prompt kinds reach the network.

    MONAI's SupervisedTrainer / SupervisedEvaluator call it on every batch and hand the prompt dict to the inferer as
    keyword arguments (``__call__``).

    Args:
        prompts: network keywords to pass, among boxes, point_coords, point_labels, mask_prompt; [] = prompt-free
            (the network's learned prompt token). "points" is a shorthand for point_coords + point_labels.
        embedding_cache: a sam2tune.data.embedding_cache.EmbeddingCache: its image features reach the network as
            `features=` (frozen-encoder training on cached embeddings); None = the network encodes every batch.
        pass_label: also hand the label to the inferer as `label=` (when the batch has one), for
            sam2tune.engines.InteractiveInferer / ClickProtocolInferer, which take corrective clicks from it. Any
            ``sam2tune.utils.as_bool`` value.

    Raises:
        ValueError: for a prompt kind not in ``PROMPT_KEYS`` (or "points"), or a ``pass_label`` that is not a boolean.
    """

    def __init__(self, prompts: Sequence[str] = ("boxes",), embedding_cache=None, pass_label: bool = False) -> None:
        self.embedding_cache, self.pass_label = embedding_cache, as_bool(pass_label, "pass_label")
        names: list[str] = []
        for p in prompts:
            names += ["point_coords", "point_labels"] if p == "points" else [p]
        unknown = [p for p in names if p not in PROMPT_KEYS]
        if unknown:
            raise ValueError(f"Unknown prompt kinds {unknown}: choose among boxes, points, mask_prompt (or []).")
        self.prompts = names

    def __call__(
        self, batchdata: Mapping, device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        """Move a collated dict batch to ``device`` and pick the prompts the network takes.

        Args:
            batchdata: collated batch: "image" (B, C, H, W), optionally "label" (B, 1, H, W), and the data keys of
                the chosen prompts (``PROMPT_KEYS`` values: "box" (B, 4) xyxy, "point_coords" (B, P, 2) xy,
                "point_labels" (B, P), "mask_prompt" (B, 1, H, W), in input pixels).
            device: where the tensors go (None = where they are).
            non_blocking: passed to ``Tensor.to``.
            **kwargs: further keyword arguments of ``Tensor.to``.

        Returns:
            (image (B, C, H, W), label (B, 1, H, W) or None when the batch has none, (), {network keyword: tensor}):
            the chosen prompts under their network keywords, plus ``features`` (the embedding cache's image
            features) when there is an embedding cache and ``label`` with ``pass_label``.

        Raises:
            KeyError: when the batch lacks the data key of a chosen prompt.
        """

        def move(x):
            return torch.as_tensor(x).to(device=device, non_blocking=non_blocking, **kwargs)

        missing = [PROMPT_KEYS[p] for p in self.prompts if PROMPT_KEYS[p] not in batchdata]
        if missing:
            raise KeyError(
                f"Batch lacks prompt keys {missing}: add SimulatePromptsd to the transforms or change prompts."
            )
        image = move(batchdata[CommonKeys.IMAGE])
        label = move(batchdata[CommonKeys.LABEL]) if CommonKeys.LABEL in batchdata else None
        kwargs = {p: move(batchdata[PROMPT_KEYS[p]]) for p in self.prompts}
        if self.embedding_cache is not None:
            kwargs["features"] = self.embedding_cache.for_batch(batchdata, image)
        if self.pass_label and label is not None:
            kwargs["label"] = label
        return image, label, (), kwargs
