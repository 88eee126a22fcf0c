"""Adapter files and the deployable merged model: round trips reproduce outputs, files are small, errors are clear."""

import copy
import json
import os

import pytest
import torch

from sam2tune.finetune import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    adapter_state_dict,
    apply_finetune,
    load_adapter,
    lora_layers,
    merged_state_dict,
    save_adapter,
    save_merged,
)
from sam2tune.networks import SAM2Segmenter


def run(net, batch):
    # No .eval() here: the networks come from an eval-mode base, and preparing them must keep that mode.
    with torch.no_grad():
        return net(batch["image"], boxes=batch["boxes"])


@pytest.fixture(scope="module")
def lora_net(tiny_base, perturb):
    """A LoRA network with non-zero (perturbed) LoRA weights, shared read-only by this module's tests."""
    return perturb(apply_finetune(copy.deepcopy(tiny_base), "lora"), seed=3)


@pytest.fixture(scope="module")
def merged_file(lora_net, tmp_path_factory) -> str:
    """model.pt written by save_merged from the LoRA network (about the size of the whole model)."""
    return save_merged(lora_net, str(tmp_path_factory.mktemp("merged") / "models" / "model.pt"))


@pytest.fixture(scope="module")
def base_output(tiny_base, batch) -> torch.Tensor:
    return run(tiny_base, batch)


@pytest.mark.parametrize("strategy", ["lora", "adapter", "prompt", "decoder_only"])
def test_save_load_round_trip_reproduces_outputs(
    base, tiny_base, perturb, batch, base_output, merged_file, tmp_path, strategy
):
    net = perturb(apply_finetune(base, strategy), seed=1)
    expected = run(net, batch)
    assert not torch.allclose(expected, base_output, atol=1e-4), "perturbation had no effect"
    directory = save_adapter(net, str(tmp_path / "adapter"))
    assert sorted(os.listdir(directory)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temporary files left behind
    meta = json.loads((tmp_path / "adapter" / CONFIG_NAME).read_text())
    assert (meta["variant"], meta["image_size"], meta["in_channels"]) == ("tiny", 64, 3)
    assert meta["finetune"]["strategy"] == strategy and meta["sam2tune_version"]
    if strategy != "decoder_only":  # parameter-efficient adapters are small next to the deployable model
        assert os.path.getsize(os.path.join(directory, WEIGHTS_NAME)) < 0.05 * os.path.getsize(merged_file)
    fresh = load_adapter(copy.deepcopy(tiny_base), directory)
    assert fresh.finetune_config == net.finetune_config
    assert torch.allclose(run(fresh, batch), expected, atol=1e-5)


def test_adapter_holds_only_trainable_weights(lora_net):
    sd = adapter_state_dict(lora_net)
    assert sd and all(".lora_A." in k or ".lora_B." in k for k in sd)
    assert not any(".default." in k for k in sd)  # peft's portable names: adapter name removed
    assert sum(v.numel() for v in sd.values()) == sum(p.numel() for p in lora_net.parameters() if p.requires_grad)


def test_lora_merged_state_dict_reproduces_outputs_in_a_plain_network(lora_net, tiny_base, batch):
    assert any(layer.lora_B["default"].weight.abs().sum() > 0 for layer in lora_layers(lora_net).values())
    expected = run(lora_net, batch)
    plain = copy.deepcopy(tiny_base)
    result = plain.load_state_dict(merged_state_dict(lora_net), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert not torch.allclose(run(tiny_base, batch), expected, atol=1e-4)
    torch.testing.assert_close(run(plain, batch), expected, atol=1e-4, rtol=1e-4)


def test_merged_state_dict_does_not_touch_the_live_network(lora_net, batch):
    before = {k: v.clone() for k, v in lora_net.state_dict().items()}
    out = run(lora_net, batch)
    merged = merged_state_dict(lora_net)
    assert not any("lora_" in k or "base_layer" in k for k in merged)
    after = lora_net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(layer.merged for layer in lora_layers(lora_net).values())
    assert torch.equal(run(lora_net, batch), out)


def test_adapter_and_prompt_merged_model_reloads_into_plain_segmenter(base, tiny_base, perturb, batch, tmp_path):
    net = perturb(apply_finetune(base, "adapter"), seed=2)
    net.prompt_tokens = torch.nn.Parameter(torch.randn(2, 256) * 0.1)
    expected = run(net, batch)
    path = save_merged(net, str(tmp_path / "model.pt"))
    assert torch.load(path, map_location="cpu", weights_only=True).keys() == net.state_dict().keys()
    plain = copy.deepcopy(tiny_base)
    plain.load_state_dict(torch.load(path, weights_only=True))  # SAM2Segmenter rebuilds adapters + tokens
    assert torch.allclose(run(plain, batch), expected, atol=1e-5)


def test_save_merged_is_a_model_pt_the_segmenter_loads(lora_net, batch, merged_file):
    assert os.listdir(os.path.dirname(merged_file)) == ["model.pt"]  # written atomically: no temporary left
    reloaded = SAM2Segmenter("tiny", 64, pretrained_checkpoint=merged_file).eval()
    torch.testing.assert_close(run(reloaded, batch), run(lora_net, batch), atol=1e-4, rtol=1e-4)


def test_load_errors_name_the_directory(lora_net, base, tmp_path):
    # Every failure below happens before load_adapter changes the network, so one copy serves them all.
    with pytest.raises(FileNotFoundError, match="nope"):
        load_adapter(base, str(tmp_path / "nope"))
    directory = save_adapter(lora_net, str(tmp_path / "a"))
    os.remove(os.path.join(directory, WEIGHTS_NAME))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'a'}.*{WEIGHTS_NAME}"):
        load_adapter(base, directory)

    directory = save_adapter(lora_net, str(tmp_path / "b"))
    meta_path = os.path.join(directory, CONFIG_NAME)
    meta = json.loads(open(meta_path).read())
    json.dump(meta | {"variant": "small"}, open(meta_path, "w"))
    with pytest.raises(ValueError, match=r"'small'.*'tiny'"):
        load_adapter(base, directory)
    json.dump(meta | {"in_channels": 1}, open(meta_path, "w"))
    with pytest.raises(ValueError, match="in_channels=1"):
        load_adapter(base, directory)
    json.dump(meta, open(meta_path, "w"))
    assert getattr(base, "finetune_config", None) is None
    with pytest.raises(ValueError, match="prepared for"):
        load_adapter(apply_finetune(base, "prompt"), directory)


def test_mismatched_weights_and_unprepared_network_raise(lora_net, base, tmp_path):
    with pytest.raises(ValueError, match="apply_finetune"):
        save_adapter(base, str(tmp_path / "x"))
    directory = save_adapter(lora_net, str(tmp_path / "r2"))
    meta_path = os.path.join(directory, CONFIG_NAME)
    meta = json.loads(open(meta_path).read())
    meta["finetune"]["lora_r"] = 4  # weights are rank 8: the config no longer describes them
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match=r"r2 does not fit .*shape mismatch"):
        load_adapter(base, directory)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_lora_bias_modes_round_trip(base, tiny_base, perturb, tmp_path, bias):
    net = perturb(apply_finetune(base, {"strategy": "lora", "lora_bias": bias}), seed=4)
    saved = adapter_state_dict(net)
    biases = [k for k in saved if k.endswith(".bias")]
    assert biases and any(".base_layer.bias" in k for k in biases)
    if bias == "all":
        assert "sam.sam_mask_decoder.iou_prediction_head.layers.0.bias" in saved
    fresh = load_adapter(copy.deepcopy(tiny_base), save_adapter(net, str(tmp_path / bias)))
    trained = dict(net.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in fresh.named_parameters() if p.requires_grad)
    assert sum(p.requires_grad for p in fresh.parameters()) == len(saved)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lora_on_gpu_round_trip_and_merge(tiny_base, perturb, batch, tmp_path):
    net = perturb(apply_finetune(copy.deepcopy(tiny_base).cuda(), "lora"), seed=6)
    image, boxes = batch["image"].cuda(), batch["boxes"].cuda()
    with torch.no_grad():
        expected = net(image, boxes=boxes)
        fresh = load_adapter(copy.deepcopy(tiny_base).cuda(), save_adapter(net, str(tmp_path / "gpu")))
        assert next(p for p in fresh.parameters() if p.requires_grad).is_cuda
        torch.testing.assert_close(fresh(image, boxes=boxes), expected, atol=1e-4, rtol=1e-4)
        plain = copy.deepcopy(tiny_base).cuda()
        plain.load_state_dict(merged_state_dict(net))
        torch.testing.assert_close(plain(image, boxes=boxes), expected, atol=1e-3, rtol=1e-3)
