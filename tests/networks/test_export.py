"""TorchScript (through MONAI's ckpt_export, as the model zoo calls it) and ONNX exports load and match eager SAM2."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from sam2tune.networks import SAM2Segmenter
from sam2tune.networks.export import BoxPromptedSegmenter, ImageEncoder, example_inputs
from sam2tune.networks.onnx_export import export_encoder_onnx, export_onnx, onnx_max_abs_diff

logger = logging.getLogger(__name__)
pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"), pytest.mark.filterwarnings("ignore")]

SIZE = 64
# Traced / exported graphs run the same float32 arithmetic as eager; the gaps seen were 0 (TorchScript) and ~3e-7
# (onnxruntime) on logits of magnitude ~1. The tolerances leave room for other CPUs' kernels, not for a wrong graph.
TS_ATOL = 1e-4
ONNX_ATOL = 1e-3


@pytest.fixture(scope="module")
def segmenter() -> SAM2Segmenter:
    """Tiny 64 px 3-channel segmenter with one learned prompt token (as the 2D bundles build it), random weights."""
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", SIZE, in_channels=3, num_prompt_tokens=1).eval()


def _bundle(tmp_path, segmenter_config: dict, metadata_image: dict) -> dict:
    """A minimal bundle folder: configs/inference.json (network_def = the wrapper), metadata.json, models/model.pt."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "models").mkdir()
    config = {
        "imports": ["$import sam2tune"],
        "network_def": {
            "_target_": "sam2tune.networks.BoxPromptedSegmenter",
            "segmenter": {"_target_": "sam2tune.networks.SAM2Segmenter", **segmenter_config},
        },
    }
    meta = {
        "version": "0.0.1",
        "changelog": {"0.0.1": "test"},
        "network_data_format": {
            "inputs": {"image": {"type": "image", "dtype": "float32", **metadata_image}},
            "outputs": {"pred": {"type": "image", "num_channels": 1, "dtype": "float32"}},
        },
    }
    (tmp_path / "configs" / "inference.json").write_text(json.dumps(config))
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(meta))
    return {
        "config_file": str(tmp_path / "configs" / "inference.json"),
        "meta_file": str(tmp_path / "configs" / "metadata.json"),
        "bundle_root": str(tmp_path),
    }


def test_ckpt_export_as_the_zoo_calls_it_writes_torchscript_matching_eager(tmp_path, segmenter):
    """monai.bundle.ckpt_export with the zoo CI's arguments (no use_trace): the .ts loads and matches eager outputs."""
    from monai.bundle import ckpt_export

    files = _bundle(tmp_path, {"variant": "tiny", "image_size": SIZE, "in_channels": 3, "num_prompt_tokens": 1}, {})
    torch.save(segmenter.state_dict(), tmp_path / "models" / "model.pt")  # the zoo's _produce_fake_weights
    ts_path = tmp_path / "models" / "verify_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(tmp_path / "models" / "model.pt"),
        **files,
    )
    loaded = torch.jit.load(str(ts_path))
    eager = BoxPromptedSegmenter(segmenter)
    image, boxes = example_inputs(segmenter, batch=2)
    boxes[1] = float("nan")  # "no box for this sample"
    with torch.no_grad():
        diffs = {
            "boxes": (loaded(image, boxes) - eager(image, boxes)).abs().max().item(),
            "no prompt (learned token)": (loaded(image[:1]) - eager(image[:1])).abs().max().item(),
        }
        out = loaded(image, boxes)
    logger.info("TorchScript max abs diff vs eager: %s", diffs)
    print(f"TorchScript max abs diff vs eager: {diffs}")
    assert out.shape == (2, 1, SIZE, SIZE)
    assert all(d <= TS_ATOL for d in diffs.values()), diffs
    # ckpt_export stores the bundle's metadata and config inside the archive.
    extra = {"metadata.json": "", "inference.json": ""}
    torch.jit.load(str(ts_path), _extra_files=extra)
    assert json.loads(extra["inference.json"])["network_def"]["_target_"].endswith("BoxPromptedSegmenter")
    # The graph is traced at one input size: another size is refused with a message, not a silently wrong mask.
    with pytest.raises(Exception, match="traced at input size 64x64"):
        loaded(torch.rand(1, 3, 32, 32))


def test_verify_net_in_out_on_a_per_slice_network_without_prompt_tokens(tmp_path):
    """The 3D bundle's network is per-slice 2D: metadata declaring a 2D 1-channel slice in, 1 channel out passes."""
    from monai.bundle import verify_net_in_out

    files = _bundle(
        tmp_path,
        {"variant": "tiny", "image_size": SIZE, "in_channels": 1},
        {"num_channels": 1, "spatial_shape": [SIZE, SIZE]},
    )
    files.pop("bundle_root")
    verify_net_in_out(net_id="network_def", device="cpu", **files)  # raises on a channel / dtype mismatch
    # A 3D declaration (what abdomen_ct_sam2 had) fails: the network takes (B, C, H, W) slices.
    meta = json.loads((tmp_path / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [SIZE, SIZE, 8]
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        verify_net_in_out(net_id="network_def", device="cpu", **files)


def test_wrapper_state_dict_is_the_segmenters(segmenter):
    """model.pt written from the wrapper (zoo fake weights) has the segmenter's own keys and loads back."""
    wrapper = BoxPromptedSegmenter(segmenter)
    keys = list(wrapper.state_dict())
    assert keys == list(segmenter.state_dict())
    assert not any(k.startswith("segmenter.") for k in keys)
    other = BoxPromptedSegmenter(SAM2Segmenter("tiny", SIZE, in_channels=3, num_prompt_tokens=1))
    other.load_state_dict(wrapper.state_dict())
    assert torch.equal(other.segmenter.prompt_tokens, segmenter.prompt_tokens)


def test_onnx_promptable_model_matches_pytorch(tmp_path, segmenter):
    """image + box -> logits in onnxruntime equals PyTorch (batch 2, one sample without a box)."""
    path = export_onnx(segmenter, tmp_path / "sam2_box.onnx")
    image, boxes = example_inputs(segmenter, batch=2)
    boxes[1] = float("nan")
    diffs = onnx_max_abs_diff(path, BoxPromptedSegmenter(segmenter), {"image": image, "boxes": boxes})
    print(f"ONNX promptable max abs diff vs PyTorch: {diffs}")
    assert len(diffs) == 1 and diffs[0] <= ONNX_ATOL, diffs
    assert not segmenter.training


def test_onnx_image_encoder_matches_pytorch_and_the_cache_features(tmp_path, segmenter):
    """image -> (embedding, raw high-res maps) in onnxruntime equals SAM2Segmenter.encode(project_high_res=False)."""
    path = export_encoder_onnx(segmenter, tmp_path / "sam2_encoder.onnx")
    image, _ = example_inputs(segmenter, batch=1)
    encoder = ImageEncoder(segmenter)
    diffs = onnx_max_abs_diff(path, encoder, {"image": image})
    print(f"ONNX image encoder max abs diff vs PyTorch: {diffs}")
    assert len(diffs) == 3 and max(diffs) <= ONNX_ATOL, diffs
    with torch.no_grad():
        feats = segmenter.encode(image, project_high_res=False)
        embed, s0, s1 = encoder(image)
    assert torch.equal(embed, feats["image_embed"]) and torch.equal(s0, feats["raw_high_res_feats"][0])
    assert embed.shape == (1, 256, SIZE // 16, SIZE // 16)
