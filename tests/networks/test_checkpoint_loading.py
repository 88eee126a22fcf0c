"""Fine-tuned model.pt files load strictly (errors name keys, counts and cause); official SAM2 files stay tolerant."""

import copy
import logging
import os

import pytest
import torch

from sam2tune.finetune import adapter_state_dict, apply_finetune, save_merged
from sam2tune.networks import (
    CheckpointMismatchError,
    SAM2Segmenter,
    build_sam2_model,
    load_finetuned_state_dict,
    load_sam2_checkpoint,
    read_state_dict,
)

IMAGE = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
BOX = torch.tensor([[4.0, 6.0, 40.0, 50.0]])


@pytest.fixture(scope="module")
def trained() -> SAM2Segmenter:
    """A tiny 64 px segmenter with one prompt token and weights unlike any fresh random init."""
    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, num_prompt_tokens=1).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return net


@pytest.fixture(scope="module")
def model_pt(trained, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(trained.state_dict(), path)
    return str(path)


def _save(state: dict, tmp_path, name: str = "model.pt") -> str:
    path = str(tmp_path / name)
    torch.save(state, path)
    return path


def test_matching_model_pt_loads_exactly(trained, model_pt, caplog):
    torch.manual_seed(5)
    with caplog.at_level(logging.INFO, logger="sam2tune.networks.state_fit"):
        net = SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=model_pt).eval()
    assert "all keys matched" in caplog.text
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in trained.state_dict().items())
    with torch.no_grad():
        assert torch.equal(net(IMAGE, boxes=BOX), trained(IMAGE, boxes=BOX))


def test_a_dropped_key_is_refused_with_its_name_and_count(trained, tmp_path):
    state = dict(trained.state_dict())
    del state["sam.sam_mask_decoder.iou_token.weight"]
    state["sam.not_a_key"] = torch.zeros(1)
    path = _save(state, tmp_path)
    with pytest.raises(CheckpointMismatchError) as err:
        SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=path)
    text = str(err.value)
    assert path in text
    assert "missing keys 1 ['sam.sam_mask_decoder.iou_token.weight']" in text
    assert "unexpected keys 1 ['sam.not_a_key']" in text


def test_another_variant_is_refused_naming_it(tmp_path):
    small = SAM2Segmenter("small", 64)
    path = _save(small.state_dict(), tmp_path)
    with pytest.raises(
        CheckpointMismatchError, match=r"file is SAM2 'small' but the network is 'tiny': set sam2_variant small"
    ):
        SAM2Segmenter("tiny", 64, pretrained_checkpoint=path)


def test_another_bundle_in_channels_and_prompt_tokens(trained, model_pt, tmp_path):
    # a 3-channel, 1-token model.pt into a 5-channel network: channel adapter weights are missing
    with pytest.raises(
        CheckpointMismatchError,
        match=r"missing keys 1 \['channel_adapter\.proj\.weight'\].*in_channels=1 or 3 but the network has "
              r"in_channels=5",
    ):
        SAM2Segmenter("tiny", 64, in_channels=5, num_prompt_tokens=1, pretrained_checkpoint=model_pt)
    # a model.pt without prompt tokens into a network_def that asks for one (e.g. abdomen's file in optic cup)
    state = {k: v for k, v in trained.state_dict().items() if k != "prompt_tokens"}
    with pytest.raises(CheckpointMismatchError, match=r"1 learned prompt token.*but the file has none"):
        SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=_save(state, tmp_path))
    # another number of prompt tokens: a shape mismatch, named with both shapes
    state = dict(trained.state_dict(), prompt_tokens=torch.zeros(2, 256))
    with pytest.raises(
        CheckpointMismatchError, match=r"prompt_tokens: file \(2, 256\) vs network \(1, 256\).*2 prompt token"
    ):
        SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=_save(state, tmp_path, "two.pt"))


def test_adapter_network_with_a_plain_file_names_the_strategy(trained, model_pt):
    net = SAM2Segmenter("tiny", 64, num_prompt_tokens=1, adapter_dim=8)
    with pytest.raises(
        CheckpointMismatchError, match=r"missing keys 48 .*bottleneck adapters.*another finetune strategy"
    ):
        load_finetuned_state_dict(net, read_state_dict(model_pt), model_pt)


def test_unmerged_lora_file_and_lora_wrapped_network(trained, tmp_path):
    lora = apply_finetune(copy.deepcopy(trained), "lora")
    unmerged = _save(dict(lora.state_dict()), tmp_path, "unmerged.pt")
    with pytest.raises(CheckpointMismatchError, match=r"unmerged peft LoRA keys.*not the exported model\.pt"):
        SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=unmerged)
    merged = save_merged(lora, str(tmp_path / "merged.pt"))
    wrapped = apply_finetune(SAM2Segmenter("tiny", 64, num_prompt_tokens=1), "lora")
    with pytest.raises(CheckpointMismatchError, match=r"network is wrapped for finetune 'lora'.*before apply_finetune"):
        load_finetuned_state_dict(wrapped, read_state_dict(merged), merged)


def test_merged_lora_model_pt_loads_strictly_and_predicts_alike(trained, tmp_path):
    lora = apply_finetune(copy.deepcopy(trained), "lora").eval()
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if ".lora_B." in name:
                p.add_(torch.randn_like(p) * 0.05)  # peft starts lora_B at zero: make the delta real
        expected = lora(IMAGE, boxes=BOX)
    path = save_merged(lora, str(tmp_path / "model.pt"))
    plain = SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=path).eval()
    with torch.no_grad():
        out = plain(IMAGE, boxes=BOX)
        assert torch.allclose(out, expected, atol=1e-4)
        assert not torch.allclose(out, trained(IMAGE, boxes=BOX), atol=1e-4)  # the LoRA delta is in the file


def test_adapter_only_file_is_named(trained, tmp_path):
    lora = apply_finetune(copy.deepcopy(trained), "lora")
    path = _save(adapter_state_dict(lora), tmp_path, "adapter_only.pt")
    # keys are "sam.*", so it takes the fine-tuned (strict) path and is refused, not half-loaded
    with pytest.raises(CheckpointMismatchError, match=r"no image encoder: an adapter-only file.*load_adapter"):
        SAM2Segmenter("tiny", 64, num_prompt_tokens=1, pretrained_checkpoint=path)


def test_direct_load_state_dict_is_strict_by_default(trained):
    net = SAM2Segmenter("tiny", 64, num_prompt_tokens=1)
    state = {k: v for k, v in trained.state_dict().items() if "sam_mask_decoder" not in k}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \d+ \['sam\.sam_mask_decoder\."):
        net.load_state_dict(state)
    result = net.load_state_dict(state, strict=False)  # the torch API stays: an explicit opt-out still works
    assert result.missing_keys and all("sam_mask_decoder" in k for k in result.missing_keys)


def test_official_checkpoint_path_stays_tolerant_and_reported(trained, tmp_path, caplog):
    sd = {k[4:]: v for k, v in trained.state_dict().items() if k.startswith("sam.")}
    del sd["sam_mask_decoder.iou_token.weight"]
    path = _save({"model": sd}, tmp_path, "sam2.1_hiera_tiny.pt")
    with caplog.at_level(logging.WARNING, logger="sam2tune.networks.build"):
        net = SAM2Segmenter("tiny", 64, pretrained_checkpoint=path)
    assert "1 missing keys ['sam_mask_decoder.iou_token.weight']" in caplog.text
    assert torch.equal(net.sam.image_encoder.trunk.pos_embed, trained.sam.image_encoder.trunk.pos_embed)


def test_official_path_refuses_a_file_with_no_sam2_key(tmp_path):
    path = _save({"model": {"encoder.conv.weight": torch.zeros(2, 2)}}, tmp_path, "baseline.pt")
    with pytest.raises(ValueError, match=r"baseline\.pt holds none of SAM2's keys"):
        load_sam2_checkpoint(build_sam2_model("tiny", 64, warn_random_init=False), path, "tiny")


class _Payload:
    """Unpickling this would run code: torch.load(weights_only=True) must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoints_are_read_with_weights_only(tmp_path):
    marker = str(tmp_path / "ran")
    path = _save({"model": {"w": torch.zeros(1)}, "evil": _Payload(marker)}, tmp_path, "evil.pt")
    if os.path.exists(marker):  # torch.save pickles by reduce without calling; make sure the test starts clean
        os.remove(marker)
    with pytest.raises(ValueError, match=r"evil\.pt with torch\.load\(weights_only=True\)"):
        SAM2Segmenter("tiny", 64, pretrained_checkpoint=path)
    assert not os.path.exists(marker)
