"""AdapterBank: several adapters over one frozen base; switching is exact and never writes the base's weights."""

import copy
import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sam2tune.finetune import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterBank,
    FinetuneConfig,
    apply_finetune,
    lora_layers,
    save_adapter,
)

DECODER_ONLY_TARGETS = r"sam\.sam_mask_decoder\.transformer\..*(q_proj|k_proj|v_proj|out_proj)"


def lora_parameters(base, name: str) -> int:
    return sum(
        p.numel()
        for layer in lora_layers(base).values()
        for d in (layer.lora_A, layer.lora_B)
        if name in d
        for p in d[name].parameters()
    )


def train_steps(net, batch, target_value: float, steps: int = 2):
    """A few AdamW steps towards a constant target: different targets give different adapters."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    target = torch.full((1, 1, 64, 64), target_value)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(net(batch["image"], boxes=batch["boxes"]), target).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def adapters(tiny_base, batch, perturb, tmp_path_factory):
    """name -> (directory, output of the network that was saved) for two LoRA adapters and one adapter+prompt."""
    root = tmp_path_factory.mktemp("bank")
    out = {}
    torch.manual_seed(0)
    specs = {
        # "a" adapts the decoder only (cheap to train); "b" the default encoder + decoder layers at another rank:
        # the bank must also switch between adapters that wrap different layer sets.
        "a": (FinetuneConfig(strategy="lora", lora_target_modules=DECODER_ONLY_TARGETS), 1.0),
        "b": (FinetuneConfig(strategy="lora", lora_r=4), 0.0),
    }
    for name, (config, target) in specs.items():
        net = train_steps(apply_finetune(copy.deepcopy(tiny_base), config), batch, target)
        with torch.no_grad():
            out[name] = (save_adapter(net, str(root / name)), net(batch["image"], boxes=batch["boxes"]))
        del net
    net = copy.deepcopy(tiny_base)
    net.prompt_tokens = torch.nn.Parameter(torch.zeros(2, 256))  # tokens present: the adapter strategy trains them
    net = perturb(apply_finetune(net, FinetuneConfig(strategy="adapter", adapter_dim=8)), seed=5).eval()
    with torch.no_grad():
        out["c"] = (save_adapter(net, str(root / "c")), net(batch["image"], boxes=batch["boxes"]))
    return out


@pytest.fixture(scope="module")
def bank_and_snapshot(tiny_base, adapters):
    base = copy.deepcopy(tiny_base)
    snapshot = {n: (p, p.detach().clone()) for n, p in base.named_parameters()}
    bank = AdapterBank(base)
    for name, (directory, _) in adapters.items():
        bank.add(name, directory)
    return bank, snapshot


def test_bank_runs_each_adapter_like_the_trained_network(bank_and_snapshot, adapters, batch):
    bank, _ = bank_and_snapshot
    assert bank.names == ["a", "b", "c"] and bank.active == "a"  # the first one added stays active
    outputs = {}
    for name, (_, expected) in adapters.items():
        outputs[name] = bank.use(name)(batch["image"], boxes=batch["boxes"])
        torch.testing.assert_close(outputs[name], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(outputs["a"], outputs["b"], atol=1e-4)


def test_switching_back_restores_outputs_bit_for_bit(bank_and_snapshot, batch):
    bank, _ = bank_and_snapshot
    run = lambda: bank(batch["image"], boxes=batch["boxes"])  # noqa: E731
    a1 = bank.use("a") and run()
    b = bank.use("b") and run()
    a2 = bank.use("a") and run()
    c = bank.use("c") and run()
    a3 = bank.use("a") and run()
    assert torch.equal(a1, a2) and torch.equal(a1, a3)
    assert not torch.equal(a1, b) and not torch.equal(a1, c)
    assert bank.base.prompt_tokens is None  # "c" brought prompt tokens; "a" has none and runs without them


def test_base_parameters_never_change(bank_and_snapshot, batch):
    bank, snapshot = bank_and_snapshot
    for name in ("c", "b", "a", "c"):
        bank.use(name)(batch["image"], boxes=batch["boxes"])
    assert all(torch.equal(p, value) for p, value in snapshot.values())
    assert not any(p.requires_grad for p in bank.base.parameters())


def test_memory_bytes_per_adapter(bank_and_snapshot):
    bank, _ = bank_and_snapshot
    sizes = bank.memory_bytes()
    assert set(sizes) == {"a", "b", "c"}
    assert sizes["b"] == 314_624 * 4 // 2  # default targets at r=4: half of tiny's 314,624 r=8 LoRA parameters
    # "a": decoder attention only, r=8: 28 layers, 256 -> 256 (self-attention) or 256 <-> 128 (cross-attention).
    assert sizes["a"] == 4 * lora_parameters(bank.base, "a") == 4 * 8 * (8 * 512 + 20 * 384)
    dims = [blk.dim_out for blk in bank.base.sam.image_encoder.trunk.blocks]
    assert sizes["c"] == 4 * (sum(2 * d * 8 + 8 + d for d in dims) + 2 * 256)


def test_bank_errors(bank_and_snapshot, adapters, tiny_base, tmp_path):
    bank, _ = bank_and_snapshot
    directory = adapters["a"][0]
    with pytest.raises(ValueError, match="already in the bank"):
        bank.add("a", directory)
    with pytest.raises(ValueError, match="identifier"):
        bank.add("my.adapter", directory)
    with pytest.raises(KeyError, match="zzz"):
        bank.use("zzz")
    wrong = shutil.copytree(directory, tmp_path / "wrong")
    meta = json.loads((wrong / CONFIG_NAME).read_text())
    (wrong / CONFIG_NAME).write_text(json.dumps(meta | {"variant": "large"}))
    with pytest.raises(ValueError, match="'large'"):
        bank.add("w", str(wrong))
    assert bank.names == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        bank.add("m", os.path.join(str(tmp_path), "missing_dir"))
    # A damaged adapter folder is refused before the base is touched: the bank stays as it was.
    damaged = shutil.copytree(adapters["c"][0], tmp_path / "damaged")
    weights = load_file(damaged / WEIGHTS_NAME)
    key = next(k for k in weights if k.endswith("blocks.0.adapter.down.weight"))
    save_file(weights | {key: torch.zeros(16, weights[key].shape[1])}, damaged / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="bottleneck width 16"):
        bank.add("d", str(damaged))
    key = next(k for k in weights if k.endswith("blocks.1.adapter.up.weight"))
    save_file(weights | {key: weights[key].T.contiguous()}, damaged / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="does not fit the base"):
        bank.add("d", str(damaged))
    assert bank.names == ["a", "b", "c"]
    prepared = copy.deepcopy(tiny_base)
    prepared.finetune_config = FinetuneConfig(strategy="prompt")
    with pytest.raises(ValueError, match="plain base"):
        AdapterBank(prepared)
    with pytest.raises(RuntimeError, match="add"):
        AdapterBank(copy.deepcopy(tiny_base))(torch.rand(1, 3, 64, 64), boxes=torch.tensor([[1.0, 1, 9, 9]]))
