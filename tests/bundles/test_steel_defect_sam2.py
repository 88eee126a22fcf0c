"""steel_defect_sam2 on Severstal phantoms: step-named LoRA outputs, logs, merged == unmerged, adapter bank, CLI."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from sam2tune.data.phantoms.severstal import write_severstal_phantoms
from sam2tune.data.severstal import severstal_datalist
from sam2tune.finetune import AdapterBank, apply_finetune, load_adapter, param_groups, save_adapter
from sam2tune.finetune.bank_benchmark import measure_adapter_bank
from sam2tune.networks import SAM2Segmenter
from sam2tune.transforms import LoadJPEGd

BUNDLE = "steel_defect_sam2"
SIZE = 64  # the bundle's network_def has one learned prompt token (prompt-free requests): build bases alike


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("severstal")
    write_severstal_phantoms(str(out), cases=10, seed=1, size=32)
    return str(out)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory):
    """A fixed base model file, so the unmerged adapter and the bank can be put back on the exact training base."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "base.pt"
    torch.save(SAM2Segmenter("tiny", SIZE, num_prompt_tokens=1).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def trained(phantoms, base_ckpt, tmp_path_factory, bundle_tools):
    """One short LoRA run (validation every 2 steps, a train log row every step) shared by the tests below."""
    out = tmp_path_factory.mktemp("run")
    bundle_tools.run_workflow(
        BUNDLE,
        ["train"],
        dataset_dir=phantoms,
        output_dir=str(out),
        ckpt_dir=str(out / "models"),
        pretrained_checkpoint=base_ckpt,
        max_epochs=1,
        val_interval_steps=2,
        log_interval=1,
        deterministic=False,
        **bundle_tools.TINY,
    )
    yield out
    shutil.rmtree(out, ignore_errors=True)  # checkpoints: free the disk once the module is done


def _batch(phantoms: str, split: str = "val"):
    """First item of a split as (image (1,3,H,W), boxes (1,4)) through the bundle's loader + its class's box."""
    from sam2tune.transforms.rle import DecodeRLEd

    item = DecodeRLEd()(LoadJPEGd()(dict(severstal_datalist(phantoms, split)[0])))
    ys, xs = np.nonzero(item["label"][0].numpy())
    box = torch.tensor([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=torch.float32)
    return item["image"].as_tensor()[None], box


def test_named_outputs_and_summary(trained):
    models = trained / "models"
    summary = json.loads((trained / "training_summary.json").read_text())
    steps = summary["total_steps"]
    assert steps >= 2 and summary["epochs"] == 1 and not summary["stopped_early"]
    best = [p.name for p in models.glob("best_lora_step*")]
    merged = [p.name for p in models.glob("best_merged_step*.pt")]
    assert len(best) == 1 and len(merged) == 1, "exactly one best adapter and one best merged model are kept"
    m = re.fullmatch(r"best_lora_step(\d+)_iou(\d\.\d{4})_dice(\d\.\d{4})", best[0])
    assert m and int(m.group(1)) == summary["best_step"]
    assert float(m.group(2)) == pytest.approx(summary["best_val_iou"], abs=5e-5)
    assert float(m.group(3)) == pytest.approx(summary["best_val_dice"], abs=5e-5)
    assert merged[0] == best[0].replace("best_lora", "best_merged") + ".pt"
    # best = first validation that beat the previous best by more than min_delta (1e-4)
    assert summary["best_val_iou"] in [v["iou"] for v in summary["validations"]]
    assert summary["best_val_iou"] >= max(v["iou"] for v in summary["validations"]) - 1e-4
    assert (models / f"final_lora_step{steps}" / "adapter_model.safetensors").is_file()
    assert [p.name for p in models.glob("latest_lora_step*")] == [
        f"latest_lora_step{summary['validations'][-1]['step']}"
    ]
    assert summary["parameters"]["trainable"] < 0.05 * summary["parameters"]["total"]
    # the contract's deployable pair follows the best model
    a = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    b = torch.load(models / merged[0], map_location="cpu", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("lora_" in k for k in a)
    assert json.loads((trained / "training_history.json").read_text())[0]["epoch"] == 1


def test_csv_logs(trained):
    summary = json.loads((trained / "training_summary.json").read_text())
    train = list(csv.DictReader(open(trained / "train_log.csv")))
    val = list(csv.DictReader(open(trained / "val_log.csv")))
    assert [int(r["step"]) for r in train] == list(range(1, summary["total_steps"] + 1))
    assert all(math.isfinite(float(r["loss"])) and 0 < float(r["lr"]) <= 1e-3 for r in train)
    assert all(0.0 <= float(r["iou"]) <= 1.0 for r in train if r["iou"] != "nan")
    # warmup then cosine decay: the LR of the last step is below the peak
    lrs = [float(r["lr"]) for r in train]
    assert lrs[-1] < max(lrs)
    assert [int(r["step"]) for r in val] == [v["step"] for v in summary["validations"]]
    assert [float(r["iou"]) for r in val] == pytest.approx([v["iou"] for v in summary["validations"]], abs=1e-6)


@pytest.fixture(scope="module")
def best(trained):
    """(best adapter dir, best merged model path) of the shared run."""
    models = trained / "models"
    return str(next(models.glob("best_lora_step*"))), str(next(models.glob("best_merged_step*.pt")))


@pytest.fixture(scope="module")
def outputs(best, phantoms, base_ckpt):
    """Merged model and base + adapter (unmerged) run on one validation image with its box."""
    merged = SAM2Segmenter("tiny", SIZE, num_prompt_tokens=1, pretrained_checkpoint=best[1]).eval()
    unmerged = load_adapter(
        SAM2Segmenter("tiny", SIZE, num_prompt_tokens=1, pretrained_checkpoint=base_ckpt), best[0]
    ).eval()
    image, boxes = _batch(phantoms)
    with torch.no_grad():
        return {"merged_net": merged, "image": image, "boxes": boxes,
                "merged": merged(image, boxes=boxes), "unmerged": unmerged(image, boxes=boxes)}


def test_merged_and_unmerged_agree(outputs):
    a, b = outputs["merged"], outputs["unmerged"]
    assert a.shape == (1, 1, 32, 200)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def _second_adapter(phantoms: str, base_ckpt: str, directory: str) -> str:
    """A second steel adapter (rank 4, other seed), trained 2 AdamW steps on the train split's first image."""
    torch.manual_seed(7)
    net = apply_finetune(SAM2Segmenter("tiny", SIZE, num_prompt_tokens=1, pretrained_checkpoint=base_ckpt),
                         {"strategy": "lora", "lora_r": 4, "lora_alpha": 8})
    from sam2tune.transforms.rle import DecodeRLEd

    item = DecodeRLEd()(LoadJPEGd()(dict(severstal_datalist(phantoms, "train")[0])))
    image, label = item["image"].as_tensor()[None], (item["label"].as_tensor()[None] > 0).float()
    opt = torch.optim.AdamW(param_groups(net, 1e-2, 1.0, 0.0), lr=1e-2)
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(image), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_adapter(net, directory)


def test_adapter_bank_switches_and_restores_bit_for_bit(best, outputs, phantoms, base_ckpt, tmp_path):
    other = _second_adapter(phantoms, base_ckpt, str(tmp_path / "steel_r4"))
    bank = AdapterBank(SAM2Segmenter("tiny", SIZE, num_prompt_tokens=1, pretrained_checkpoint=base_ckpt))
    base_before = {k: v.clone() for k, v in bank.base.state_dict().items()}
    bank.add("steel", best[0]).add("steel_r4", other)
    image, boxes = outputs["image"], outputs["boxes"]
    out_a = bank.use("steel")(image, boxes=boxes)
    out_b = bank.use("steel_r4")(image, boxes=boxes)
    out_a2 = bank.use("steel")(image, boxes=boxes)
    assert not torch.allclose(out_a, out_b, atol=1e-4), "switching adapters must change the output"
    assert torch.equal(out_a, out_a2), "switching back must restore the output bit-for-bit"
    assert torch.allclose(out_a, outputs["unmerged"], atol=1e-5), "a bank entry runs like base + load_adapter"
    # the shared base's own weights were never rewritten (peft moves them under .base_layer)
    after = {k.replace(".base_layer", ""): v for k, v in bank.base.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], v) for k, v in base_before.items() if k != "prompt_tokens")

    merged_state = torch.load(best[1], map_location="cpu", weights_only=True)
    stats = measure_adapter_bank(
        bank, image, {"boxes": boxes}, repeats=4, full_model=outputs["merged_net"], full_state=merged_state
    )
    assert stats["adapters"] == ["steel", "steel_r4"] and bank.active == "steel"
    assert 0 < stats["adapter_bytes"]["steel_r4"] < stats["adapter_bytes"]["steel"] < 0.05 * stats["base_bytes"]
    assert stats["bank_bytes"] < stats["one_full_model_per_domain_bytes"]
    assert stats["switch_ms"] > 0 and stats["reload_ms"] > 0 and stats["forward_ms"] > 0


def test_evaluate_writes_per_class_report(trained, phantoms, bundle_tools):
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate"], dataset_dir=phantoms, output_dir=str(trained),
                              ckpt_dir=str(trained / "models"), deterministic=False, **bundle_tools.TINY)
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    test_items = severstal_datalist(phantoms, "test", str(trained / "splits"))
    assert summary["n"] == len(test_items) and 0.0 <= summary["mean_iou"] <= 1.0
    assert set(summary["per_class"]) == {f"class_{i['class_id']}" for i in test_items}


def test_inference_full_size_mask(trained, phantoms, tmp_path, bundle_tools):
    """inference.json (run id `inferring`) on a 200x32 phantom with a box: the mask keeps the steel image's size.

    In-process to fit the test budget; the CLI form is the same config (see docs/README.md).
    """
    from PIL import Image

    item = severstal_datalist(phantoms, "test")[0]
    out = tmp_path / "masks"
    bundle_tools.run_workflow(
        BUNDLE,
        ["inference"],
        run_id="inferring",
        input_path=item["image"],
        output_dir=str(out),
        ckpt_dir=str(trained / "models"),
        sam2_variant="tiny",
        image_size=SIZE,
        box=[10, 2, 60, 30],
    )
    masks = list(out.glob("*_mask.png"))
    assert len(masks) == 1 and Image.open(masks[0]).size == (200, 32)


def test_bad_dataset_dir_names_the_fix(tmp_path, bundle_tools):
    with pytest.raises(Exception) as err:
        bundle_tools.run_workflow(BUNDLE, ["train"], dataset_dir=str(tmp_path / "nowhere"), output_dir=str(tmp_path),
                                  deterministic=False, **bundle_tools.TINY)
    message = bundle_tools.error_chain(err.value)
    assert "nowhere" in message and "make_phantoms.py severstal" in message


def test_torchrun_two_processes_gloo(phantoms, base_ckpt, tmp_path, bundle_tools):
    """The contract's torchrun command with multi_gpu_train.json: 2 CPU processes (gloo), 3 steps, rank-0 files once."""
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    files = f"['{bundle_tools.config_path(BUNDLE, 'train')}','{bundle_tools.config_path(BUNDLE, 'multi_gpu_train')}']"
    # 9 train items / (2 ranks x batch 2) -> 3 steps; validation every 2 steps and after the last
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "monai.bundle",
            "run",
            "training",
            "--config_file",
            files,
            "--dataset_dir",
            phantoms,
            "--output_dir",
            str(tmp_path),
            "--ckpt_dir",
            str(tmp_path / "m"),
            "--pretrained_checkpoint",
            base_ckpt,
            "--sam2_variant",
            "tiny",
            "--image_size",
            str(SIZE),
            "--amp",
            "False",
            "--max_epochs",
            "1",
            "--num_workers",
            "0",
            "--batch_size",
            "2",
            "--val_interval_steps",
            "2",
            "--log_interval",
            "1",
            "--deterministic",
            "False",
        ],
        cwd=bundle_tools.REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    steps = summary["total_steps"]
    assert steps == 3 and [v["step"] for v in summary["validations"]] == [2, 3]
    # every rank-0 file exactly once, none half-written or left as a temporary
    train = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    val = list(csv.DictReader(open(tmp_path / "val_log.csv")))
    assert [int(r["step"]) for r in train] == [1, 2, 3] and [int(r["step"]) for r in val] == [2, 3]
    assert len(json.loads((tmp_path / "training_history.json").read_text())) == 1
    models = tmp_path / "m"
    names = sorted(p.name for p in models.iterdir())
    assert [
        n for n in names if n.startswith(("best_lora", "best_merged", "latest_lora", "final_lora", "checkpoint_"))
    ] == [
        f"best_lora_{summary['files']['best_lora'][len('best_lora_') :]}",
        summary["files"]["best_merged"],
        f"checkpoint_{steps}.pt",
        f"final_lora_step{steps}",
        f"latest_lora_step{steps}",
    ]
    assert not list(tmp_path.rglob(".tmp*")) and not list(tmp_path.rglob("*.tmp*"))
    state = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state), "model.pt must be the unwrapped network"
    # the two ranks trained one model: the resume checkpoint (rank 0) holds the unwrapped LoRA network
    ckpt = torch.load(models / f"checkpoint_{steps}.pt", map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["iteration"] == steps and not any(k.startswith("module.") for k in ckpt["network"])


class _Killed(RuntimeError):
    """Stands in for a kill -9 right after a step (no COMPLETED handlers run)."""


def test_resume_step_run_continues_without_redoing_steps(phantoms, base_ckpt, tmp_path, bundle_tools):
    """Kill after step K+1=4 (checkpoint at K=3, mid-epoch 2), rerun the same command: steps 4..6 only, logs go on."""
    from ignite.engine import Events

    K = 3  # 9 train items, batch 5 -> 2 steps an epoch; 3 epochs = 6 steps; checkpoints (= validations) every 3
    keys = dict(
        dataset_dir=phantoms,
        output_dir=str(tmp_path),
        ckpt_dir=str(tmp_path / "m"),
        pretrained_checkpoint=base_ckpt,
        max_epochs=3,
        val_interval_steps=K,
        val_interval=100,  # no epoch-end validations: here validations are the step checkpoints' (every K)
        log_interval=1,
        deterministic=False,
        resume=True,
        **{**bundle_tools.TINY, "batch_size": 5},
    )

    def rerun() -> list[int]:
        """The same command again, run to its end and finalized -> the steps it trained."""
        ran = []
        with bundle_tools.open_workflow(BUNDLE, ["train"], **keys) as wf:
            trainer = wf.parser.get_parsed_content("train#trainer")
            trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
            wf.run()
        return ran

    wf = bundle_tools.run_workflow(BUNDLE, ["train"], run=False, **keys)  # killed below: never finalized
    trainer = wf.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED(once=K + 1))  # one step past checkpoint K: its log row must not repeat
    def _kill(engine):
        raise _Killed(f"killed after step {engine.state.iteration}")

    with pytest.raises(RuntimeError) as err:  # MONAI wraps what the run expression raised
        wf.run()
    assert "_Killed" in bundle_tools.error_chain(err.value)
    models = tmp_path / "m"
    assert [p.name for p in models.glob("checkpoint_*.pt")] == [f"checkpoint_{K}.pt"]
    assert not (tmp_path / "training_summary.json").exists() and not list(models.glob("final_lora_step*"))
    first_rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["step"]) for r in first_rows] == [1, 2, 3, 4]

    assert rerun() == [K + 1, K + 2, 2 * K], "the resumed run must not redo checkpointed steps"

    summary = json.loads((tmp_path / "training_summary.json").read_text())
    assert summary["total_steps"] == 2 * K and summary["epochs"] == 3 and summary["resumed_from_steps"] == [K]
    assert [v["step"] for v in summary["validations"]] == [K, 2 * K], "validations of both runs, none repeated"
    best = max(summary["validations"], key=lambda v: v["iou"])  # first of equals wins only by > min_delta
    assert summary["best_val_iou"] >= best["iou"] - 1e-4 and summary["best_step"] in (K, 2 * K)
    train = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    val = list(csv.DictReader(open(tmp_path / "val_log.csv")))
    assert [int(r["step"]) for r in train] == list(range(1, 2 * K + 1)) and train[:K] == first_rows[:K]
    assert [int(r["step"]) for r in val] == [K, 2 * K]
    assert [p.name for p in models.glob("final_lora_step*")] == [f"final_lora_step{2 * K}"]
    assert [p.name for p in models.glob("latest_lora_step*")] == [f"latest_lora_step{2 * K}"]
    assert [p.name for p in models.glob("checkpoint_*.pt")] == [f"checkpoint_{2 * K}.pt"]
    assert len(list(models.glob("best_lora_step*"))) == 1 and len(list(models.glob("best_merged_step*.pt"))) == 1
    # optimizer and schedule went on from step K: AdamW's step count and the scheduler's position are 2K, not K
    ckpt = torch.load(models / f"checkpoint_{2 * K}.pt", map_location="cpu", weights_only=True)
    assert {int(s["step"]) for s in ckpt["optimizer"]["state"].values()} == {2 * K}
    assert ckpt["lr_scheduler"]["last_epoch"] == 2 * K and ckpt["trainer"]["iteration"] == 2 * K
    assert ckpt["step_validation"]["best_step"] == summary["best_step"]

    # a third start finds the run finished: nothing is trained again and the outputs stay
    assert rerun() == []
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "train_log.csv"))] == list(range(1, 2 * K + 1))
    assert json.loads((tmp_path / "training_summary.json").read_text())["total_steps"] == 2 * K


def test_click_protocol_writes_its_files(trained, phantoms, bundle_tools):
    """The click protocol on the steel test split: one curve per prompted defect, files beside each other."""
    bundle_tools.run_workflow(BUNDLE, ["train", "evaluate", "evaluate_interactive"], dataset_dir=phantoms,
                              output_dir=str(trained), ckpt_dir=str(trained / "models"), deterministic=False,
                              max_clicks=5, **bundle_tools.TINY)
    out = trained / "eval_interactive"
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["dice_at_clicks"]) == 6 and summary["objects"] >= 1
    assert (out / "per_object_clicks.csv").read_text().count("\n") == summary["objects"] + 1
    assert (out / "clicks_curve.png").is_file()
