"""Promptable 2D SAM2 segmenter: image + (box | points | mask | learned token) -> logits at input resolution."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from sam2.modeling.sam.transformer import Attention
from torch import nn

from sam2tune.networks.adapters import adapter_bottleneck_in, add_hiera_adapters
from sam2tune.networks.build import build_sam2_model, read_state_dict
from sam2tune.networks.channel_adapter import ChannelAdapter
from sam2tune.networks.interactive import decode_rounds
from sam2tune.networks.state_fit import check_state_dict_fits, is_sam2tune_state_dict, load_finetuned_state_dict

logger = logging.getLogger(__name__)

# SAM2 was trained on ImageNet-normalised RGB in [0, 1].
_PIXEL_MEAN = (0.485, 0.456, 0.406)
_PIXEL_STD = (0.229, 0.224, 0.225)


class SAM2Segmenter(nn.Module):
    """Meta's SAM2 (`self.sam`) with a channel adapter, optional learned prompt tokens, adapters and MC dropout.

    One network serves 2D prompting (``forward``) and, through ``sam2tune.networks.propagator``, 3D propagation.
    A sam2tune model.pt given as `pretrained_checkpoint` loads strictly (``load_finetuned_state_dict``: adapters /
    prompt tokens it carries are added); an official SAM2 checkpoint loads tolerantly, mismatches reported.

    Args:
        variant: tiny | small | base_plus | large.
        image_size: square model input size (multiple of 32); inputs of another size are resized to it and back.
        in_channels: channels of the images given to forward (1 for CT/MR, 3 for RGB, N for stacked maps).
        pretrained_checkpoint: official SAM2 checkpoint or a sam2tune model.pt; None = random init (loud warning).
        version: SAM2 release, "2.1" (default) or "2".
        dropout: dropout on the image embedding before the mask decoder (MC dropout, epistemic active learning).
        attn_dropout: dropout inside the mask decoder's attention (defaults to `dropout`).
        proj_dropout: dropout after each mask-decoder attention output projection (no parameters, so checkpoints
            are unchanged; an nn.Dropout child of each Attention, so MC dropout finds it).
        num_prompt_tokens: learned prompt tokens appended to the sparse prompt embeddings (prompt-free mode).
        adapter_dim: bottleneck width of adapters after each Hiera block (0 = none).
        multimask_output: return SAM's 3 candidate masks instead of one.
        warn_random_init: log the loud random-init warning when no checkpoint is given; False where the weights are
            loaded right after building (a bundle's inference.json loads model.pt with a checkpoint-loader handler).

    Raises:
        ValueError: for a dropout outside [0, 1), an unknown variant, a bad image size or a checkpoint that does not
            fit (``CheckpointMismatchError`` for a sam2tune model.pt).
        FileNotFoundError: when `pretrained_checkpoint` does not exist.
    """

    def __init__(
        self,
        variant: str = "tiny",
        image_size: int = 1024,
        in_channels: int = 3,
        pretrained_checkpoint: str | None = None,
        version: str = "2.1",
        dropout: float = 0.0,
        attn_dropout: float | None = None,
        num_prompt_tokens: int = 0,
        adapter_dim: int = 0,
        multimask_output: bool = False,
        proj_dropout: float = 0.0,
        warn_random_init: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.variant, self.image_size, self.multimask_output = variant, image_size, multimask_output
        # A sam2tune model.pt (keys "sam.*") loads strictly below; anything else goes to SAM2's tolerant, reported path.
        own_state = read_state_dict(pretrained_checkpoint) if pretrained_checkpoint else None
        if own_state is not None and not is_sam2tune_state_dict(own_state):
            own_state = None
        sam_ckpt = None if own_state is not None else pretrained_checkpoint
        warn = own_state is None and warn_random_init
        self.sam = build_sam2_model(variant, image_size, sam_ckpt, version, warn_random_init=warn)
        self.channel_adapter = ChannelAdapter(in_channels)
        self.register_buffer("pixel_mean", torch.tensor(_PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        embed_dim = self.sam.sam_prompt_encoder.embed_dim
        tokens = nn.Parameter(torch.randn(num_prompt_tokens, embed_dim) * 0.02) if num_prompt_tokens else None
        self.prompt_tokens = tokens
        self.embed_dropout = nn.Dropout(dropout)
        self.set_attention_dropout(dropout if attn_dropout is None else attn_dropout)
        if proj_dropout:
            self.set_projection_dropout(proj_dropout)
        if adapter_dim:
            add_hiera_adapters(self.sam.image_encoder.trunk, adapter_dim)
        if own_state is not None:
            load_finetuned_state_dict(self, own_state, source=str(pretrained_checkpoint))

    # ---- configuration -------------------------------------------------------------------------------------------
    def set_attention_dropout(self, p: float) -> None:
        """Set the dropout probability of every mask-decoder attention layer (SAM2's ``Attention.dropout_p``).

        Args:
            p: dropout probability, applied inside scaled dot-product attention while the layer is in training mode.
        """
        for m in self.sam.sam_mask_decoder.modules():
            if isinstance(m, Attention):
                m.dropout_p = p

    def set_projection_dropout(self, p: float) -> None:
        """Add (or update) dropout with probability `p` on every mask-decoder attention output (after out_proj).

        Args:
            p: dropout probability in [0, 1).

        Raises:
            ValueError: when `p` is outside [0, 1).
        """
        if not 0.0 <= p < 1.0:
            raise ValueError(f"proj_dropout must be in [0, 1), got {p}.")
        for m in self.sam.sam_mask_decoder.modules():
            if isinstance(m, Attention):
                if not hasattr(m, "proj_dropout"):
                    # A forward hook, not a wrapped out_proj, keeps state_dict keys and LoRA target names unchanged.
                    m.proj_dropout = nn.Dropout(p)
                    m.register_forward_hook(lambda mod, _args, out: mod.proj_dropout(out))
                m.proj_dropout.p = p

    @property
    def embed_dim(self) -> int:
        """Width of prompt embeddings (256 for all SAM2 variants)."""
        return self.sam.sam_prompt_encoder.embed_dim

    # ---- encoder -------------------------------------------------------------------------------------------------
    @property
    def image_encoder_module(self) -> nn.Module:
        """Everything ``encode`` runs that holds modules: the channel adapter and SAM2's image encoder."""
        return nn.ModuleList([self.channel_adapter, self.sam.image_encoder])

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """Map images onto SAM2's input: 3 channels, the model size, ImageNet normalisation.

        Args:
            image: (B, C, H, W) in [0, 1] (float; kept in its dtype under autocast).

        Returns:
            (B, 3, S, S) normalised at the model size S = ``image_size`` (bilinear resize when H, W differ).
        """
        x = self.channel_adapter(image.float() if not torch.is_autocast_enabled() else image)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def encode(
        self, image: torch.Tensor, project_high_res: bool = True
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Run the image encoder once: the features ``decode`` takes for any number of prompts.

        Args:
            image: (B, C, H, W) in [0, 1].
            project_high_res: True applies the mask decoder's conv_s0 / conv_s1 to the high-res maps; False returns
                them before those convs (which train with the decoder): what an embedding cache may keep.

        Returns:
            {"image_embed": (B, 256, S/16, S/16), "high_res_feats": [(B, 32, S/4, S/4), (B, 64, S/8, S/8)]}, or with
            ``project_high_res=False`` "raw_high_res_feats": [(B, C0, S/4, S/4), (B, C1, S/8, S/8)] instead.
        """
        x = self.preprocess(image)
        # forward_image = image_encoder + the mask decoder's high-res 1x1 convs; the raw path stops before the convs.
        backbone_out = self.sam.forward_image(x) if project_high_res else self.sam.image_encoder(x)
        _, feats, _, sizes = self.sam._prepare_backbone_features(backbone_out)
        if self.sam.directly_add_no_mem_embed:
            # Single images have no memory: SAM2 adds its learned "no memory" embedding (as its image predictor does).
            feats[-1] = feats[-1] + self.sam.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(f.shape[1], f.shape[2], *s) for f, s in zip(feats, sizes, strict=True)]
        return {"image_embed": maps[-1], "high_res_feats" if project_high_res else "raw_high_res_feats": maps[:-1]}

    def project_high_res(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """Project raw high-res maps onto the mask decoder's inputs (its conv_s0 / conv_s1).

        Args:
            raw: the "raw_high_res_feats" of ``encode(project_high_res=False)``.

        Returns:
            [(B, 32, S/4, S/4), (B, 64, S/8, S/8)]; `raw` unchanged when the model uses no high-res features.
        """
        if not self.sam.use_high_res_features_in_sam:
            return raw
        decoder = self.sam.sam_mask_decoder
        return [decoder.conv_s0(raw[0]), decoder.conv_s1(raw[1])]

    # ---- decoder -------------------------------------------------------------------------------------------------
    def embed_prompts(
        self,
        batch: int,
        boxes: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_prompt: torch.Tensor | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts with SAM2's prompt encoder (plus the learned prompt tokens, if any).

        Boxes go in as SAM's two corner points (labels 2, 3) before the clicks.

        Args:
            batch: batch size B (the embeddings are expanded to it when no sparse prompt is given).
            boxes: (B, 4) xyxy boxes in input pixels; a NaN row means no box for that sample.
            point_coords: (B, P, 2) xy clicks in input pixels.
            point_labels: (B, P) click labels: 1 positive, 0 negative, -1 padding.
            mask_prompt: (B, 1, h, w) mask (logits or binary), resized to SAM's mask-input size.
            scale: (sx, sy) from input pixels to model pixels.

        Returns:
            (sparse (B, N, 256), dense (B, 256, S/16, S/16)) prompt embeddings.

        Raises:
            ValueError: when `point_coords` is given without `point_labels`.
        """
        coords, labels = [], []
        sx, sy = scale
        factor = None
        if boxes is not None:
            # A NaN box means "no box for this sample": SAM's not-a-point label (-1) keeps batches rectangular.
            valid = ~torch.isnan(boxes.float()).any(-1, keepdim=True)
            factor = torch.tensor([sx, sy], device=boxes.device, dtype=torch.float32)
            coords.append(torch.nan_to_num(boxes.float()).reshape(-1, 2, 2) * factor)
            corner = torch.tensor([[2, 3]], device=boxes.device).expand(boxes.shape[0], 2)
            labels.append(torch.where(valid, corner, torch.full_like(corner, -1)))
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_coords given without point_labels (1 = positive, 0 = negative, -1 = padding).")
            factor = torch.tensor([sx, sy], device=point_coords.device, dtype=torch.float32)
            coords.append(point_coords.float() * factor)
            labels.append(point_labels.to(point_coords.device).long())
        points = (torch.cat(coords, 1), torch.cat(labels, 1).int()) if coords else None
        masks = None
        if mask_prompt is not None:
            low = 4 * self.sam.sam_image_embedding_size  # SAM's mask input is 4x the embedding grid
            masks = F.interpolate(mask_prompt.float(), size=(low, low), mode="bilinear", align_corners=False)
        sparse, dense = self.sam.sam_prompt_encoder(points=points, boxes=None, masks=masks)
        if sparse.shape[0] != batch:  # no sparse prompt at all: the encoder returns batch 1
            sparse = sparse.expand(batch, -1, -1)
            dense = dense.expand(batch, -1, -1, -1)
        if self.prompt_tokens is not None:
            sparse = torch.cat([sparse, self.prompt_tokens.unsqueeze(0).expand(batch, -1, -1).to(sparse.dtype)], 1)
        return sparse, dense

    def decode(
        self,
        features: dict,
        boxes: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_prompt: torch.Tensor | None = None,
        scale: tuple[float, float] = (1.0, 1.0),
        multimask_output: bool | None = None,
        object_scores: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Run the mask decoder on encoded features and prompts.

        Args:
            features: ``encode(image)`` output ("image_embed" and "high_res_feats" or "raw_high_res_feats").
            boxes: (B, 4) xyxy boxes in input pixels (NaN row = no box).
            point_coords: (B, P, 2) xy clicks in input pixels.
            point_labels: (B, P) click labels.
            mask_prompt: (B, 1, h, w) mask prompt.
            scale: (sx, sy) from input pixels to model pixels.
            multimask_output: SAM's 3 candidate masks instead of one; None = the network's ``multimask_output``.
            object_scores: also return SAM2's object-score logits (B, 1) (> 0: the object is present; SAM2's tracker
                blanks the slice otherwise).

        Returns:
            (low-res logits (B, K, S/4, S/4), predicted IoU (B, K)); K = 3 with multimask output, else 1; with
            ``object_scores`` a third element, the object-score logits (B, 1).
        """
        embed = self.embed_dropout(features["image_embed"])
        if "high_res_feats" in features:
            high_res = features["high_res_feats"]
        else:
            high_res = self.project_high_res(features["raw_high_res_feats"])
        batch = embed.shape[0]
        sparse, dense = self.embed_prompts(batch, boxes, point_coords, point_labels, mask_prompt, scale)
        multi = self.multimask_output if multimask_output is None else multimask_output
        low_res, iou, _, object_score = self.sam.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse.to(embed.dtype),
            dense_prompt_embeddings=dense.to(embed.dtype),
            multimask_output=multi,
            repeat_image=False,
            high_res_features=high_res,
        )
        return (low_res, iou, object_score) if object_scores else (low_res, iou)

    def forward(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor | None = None,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_prompt: torch.Tensor | None = None,
        features: dict | None = None,
        correction_target: torch.Tensor | None = None,
        correction_rounds: int = 0,
        click_mode: str = "uniform",
    ) -> torch.Tensor:
        """(B, C, H, W) image in [0, 1] + prompts in its pixel coordinates -> logits (B, K, H, W).

        Args:
            image: (B, C, H, W) in [0, 1].
            boxes: (B, 4) xyxy boxes in input pixels (NaN row = no box).
            point_coords: (B, P, 2) xy clicks in input pixels.
            point_labels: (B, P) click labels: 1 positive, 0 negative, -1 padding.
            mask_prompt: (B, 1, H, W) mask prompt.
            features: precomputed `encode(image)` output (cached embeddings); the image then only gives the output size.
            correction_target: true masks (B, 1, H, W): with it, the interactive loop runs ``correction_rounds``
                corrective clicks from the error of each round (``sam2tune.networks.interactive.decode_rounds``).
            correction_rounds: corrective clicks after the first prompt (with ``correction_target``).
            click_mode: "uniform" (training) or "center" (the evaluation click rule).

        Returns:
            Logits (B, K, H, W); with ``correction_target``, (B, correction_rounds + 1, H, W), one channel per round.

        Raises:
            ValueError: when the image is not 4D, or no prompt is given and the network has no prompt token.
        """
        if image.ndim != 4:
            raise ValueError(f"SAM2Segmenter expects (B, C, H, W) images, got shape {tuple(image.shape)}.")
        if boxes is None and point_coords is None and mask_prompt is None and self.prompt_tokens is None:
            raise ValueError("No prompt given and the network has no learned prompt token (set num_prompt_tokens).")
        h, w = image.shape[-2:]
        scale = (self.image_size / w, self.image_size / h)
        features = self.encode(image) if features is None else features
        if correction_target is not None:
            return decode_rounds(self, features, correction_target, correction_rounds, (h, w), boxes, point_coords,
                                 point_labels, mask_prompt, click_mode)
        low_res, _ = self.decode(features, boxes, point_coords, point_labels, mask_prompt, scale)
        return F.interpolate(low_res, size=(h, w), mode="bilinear", align_corners=False)

    def __prepare_scriptable__(self) -> nn.Module:
        """Give ``torch.jit.script`` (MONAI's ``ckpt_export``) the module to compile instead of this one.

        SAM2's forward takes optional prompts, which TorchScript cannot script; see sam2tune.networks.export.

        Returns:
            A ``ScriptableBoxPrompted``: traced box-prompted and no-prompt graphs at the model's image size.
        """
        from sam2tune.networks.export import prepare_scriptable

        return prepare_scriptable(self)

    # ---- state -----------------------------------------------------------------------------------------------------
    def grow_for(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Add the bottleneck adapters / prompt tokens a state_dict carries and this network lacks (before loading it).

        A model.pt trained with adapters or prompt tokens then loads into a plain network_def, no extra config.

        Args:
            state_dict: the SAM2Segmenter state_dict about to be loaded.
        """
        dim = adapter_bottleneck_in(state_dict)
        if dim and not hasattr(self.sam.image_encoder.trunk.blocks[0], "adapter"):
            add_hiera_adapters(self.sam.image_encoder.trunk, dim)
        if "prompt_tokens" in state_dict and self.prompt_tokens is None:
            ref = state_dict["prompt_tokens"]
            self.prompt_tokens = nn.Parameter(torch.zeros(ref.shape, dtype=ref.dtype, device=self.pixel_mean.device))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a SAM2Segmenter state_dict, first adding the adapters / prompt tokens it carries (``grow_for``).

        Args:
            state_dict: SAM2Segmenter keys (``sam.*``, ``channel_adapter.*``, ...).
            strict: require exactly this network's keys and shapes, checked by ``check_state_dict_fits`` first.
            assign: as for ``nn.Module.load_state_dict``.

        Returns:
            torch's (missing_keys, unexpected_keys) result.

        Raises:
            CheckpointMismatchError: with ``strict``, for any missing, unexpected or mis-shaped key (naming the keys
                and the likely cause).
        """
        self.grow_for(state_dict)
        if strict:
            # torch's own error lists every key; ours says which, how many and the likely cause.
            check_state_dict_fits(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
