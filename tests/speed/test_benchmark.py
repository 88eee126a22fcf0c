"""scripts/benchmark.py and sam2tune.speed: rows run, errors are recorded per row, JSON and Markdown are written."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sam2tune.speed import count_flops, select_rows, synthetic_batch, time_steps
from sam2tune.speed.report import rows_table
from sam2tune.speed.runner import BenchmarkSettings, _add_ratios, peak_tflops_for, run_benchmark

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("benchmark_script", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One CPU run of the script at 64 px: cached decoder, encoder inference, a compile row (skipped on CPU), 3D."""
    out = tmp_path_factory.mktemp("bench")
    args = ["--device", "cpu", "--image_size", "64", "--steps", "2", "--warmup", "0", "--batch_size", "2",
            "--strategies", "bf16_cached,inference,3d", "--pipeline_workers", "0", "--pipeline_row", "bf16_cached",
            "--pipeline_batches", "1", "--pipeline_source_size", "96", "--volume", "6,64,2", "--no_inference", "--out",
            str(out / "b.json"), "--markdown", str(out / "b.md")]
    assert _script().main(args) == 0
    return out


def test_script_writes_json_with_every_selected_row(smoke):
    result = json.loads((smoke / "b.json").read_text())
    rows = {r["id"]: r for r in result["rows"]}
    assert list(rows) == ["bf16_cached", "bf16_encode", "bf16_encode_compile", "3d_propagation"]
    assert result["device_type"] == "cpu" and result["settings"]["image_size"] == 64
    for rid in ("bf16_cached", "bf16_encode"):
        r = rows[rid]
        assert r["status"] == "ok" and r["images_per_s"] > 0 and r["peak_mem_gib"] > 0 and r["batch_size"] == 2
        assert r["precision"] == "fp32" and r["speed_vs_bf16_full"] is None  # CPU default; no baseline row run
    # Counted FLOPs: the cached step (decoder forward + backward) skips the encoder's forward entirely.
    assert rows["bf16_cached"]["gflop_per_image"] < 0.5 * rows["bf16_encode"]["gflop_per_image"]
    assert rows["bf16_encode_compile"]["status"] == "skipped" and "CUDA" in rows["bf16_encode_compile"]["reason"]
    r3 = rows["3d_propagation"]
    assert r3["status"] == "ok" and r3["seconds"] > 0 and (r3["depth"], r3["size"], r3["num_objects"]) == (6, 64, 2), r3
    assert r3["name"] == "3D propagation 64x64x6, 2 organs, both directions" and r3["amp"] is False
    names = [p["name"] for p in result["pipeline"]]
    assert names[0].startswith("synthetic") and any("CacheDataset" in n for n in names)
    assert all("error" not in p and p["step_images_per_s"] > 0 for p in result["pipeline"]), result["pipeline"]
    md = (smoke / "b.md").read_text()
    assert (
        "| bf16 decoder on cached embeddings | fp32 | 2 |" in md and "Data pipeline" in md and "--image_size 64" in md
    )


def test_failing_row_is_recorded_and_others_still_run(monkeypatch):
    import sam2tune.speed.runner as runner

    calls = []

    def fake_run_row(row, *args, **kwargs):
        calls.append(row.id)
        if row.id == "bf16_lora":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return {"images_per_s": 10.0 if row.id == "bf16_full" else 20.0, "peak_mem_gib": 1.0, "batch_size": 2,
                "memory_kind": "process_rss", "step_ms_median": 1.0, "gflop_per_image": 1.0, "fraction_of_peak": None}

    monkeypatch.setattr(runner, "run_row", fake_run_row)
    result = run_benchmark(BenchmarkSettings(device="cpu", strategies="full,lora", pipeline=False))
    status = {r["id"]: r["status"] for r in result["rows"]}
    assert status == {"medsam2_fp32": "ok", "fp32_full": "ok", "bf16_full": "ok", "bf16_full_compile": "skipped",
                      "bf16_lora": "error", "bf16_lora_ckpt": "ok"}
    lora = next(r for r in result["rows"] if r["id"] == "bf16_lora")
    assert "OutOfMemoryError" in lora["error"] and lora["speed_vs_bf16_full"] is None
    assert next(r for r in result["rows"] if r["id"] == "bf16_lora_ckpt")["speed_vs_bf16_full"] == 2.0
    assert "error: OutOfMemoryError" in rows_table(result)


def test_select_rows_and_errors():
    assert [r.id for r in select_rows("cached,bf16_encode")] == ["bf16_cached", "bf16_encode"]
    assert len(select_rows("all")) == len(select_rows(None)) >= 12
    with pytest.raises(ValueError, match="Unknown benchmark strategies.*'fastest'"):
        select_rows("full,fastest")
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0 and peak_tflops_for("NVIDIA H100 PCIe") == 756.0


def test_cuda_asked_for_without_cuda_is_refused(monkeypatch):
    """The check itself, on any machine: torch is made to see no CUDA device, so a GPU host runs it too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        RuntimeError, match=r"--device cuda was asked for, but torch sees no CUDA device \(use --device cpu\)"
    ):
        run_benchmark(BenchmarkSettings(device="cuda", strategies="bf16_cached", pipeline=False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rows_run_on_the_gpu():
    result = run_benchmark(BenchmarkSettings(device="cuda", image_size=64, batch_size=2, steps=2, warmup=1,
                                             strategies="bf16_cached,bf16_encode", compile="off", pipeline=False))
    assert result["device_type"] == "cuda" and result["device"] == torch.cuda.get_device_name(0)
    rows = {r["id"]: r for r in result["rows"]}
    for rid in ("bf16_cached", "bf16_encode"):
        r = rows[rid]
        assert r["status"] == "ok", r
        assert r["precision"] == "bf16" and r["memory_kind"] == "cuda_max_memory_allocated" and r["images_per_s"] > 0, r


def test_time_steps_flops_and_ratios():
    calls = []
    out = time_steps(lambda: calls.append(1), torch.device("cpu"), images_per_step=4, steps=3, warmup=2)
    assert len(calls) == 5 and out["steps"] == 3 and out["images_per_s"] > 0 and out["memory_kind"] == "process_rss"
    with pytest.raises(ValueError, match="steps must be >= 1"):
        time_steps(lambda: None, torch.device("cpu"), 1, steps=0)
    a, b = torch.rand(8, 16), torch.rand(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    batch = synthetic_batch(3, 32, torch.device("cpu"))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].sum() > 0
    assert (batch["boxes"][:, 2:] > batch["boxes"][:, :2]).all()
    rows = [{"id": "bf16_full", "status": "ok", "images_per_s": 10.0, "peak_mem_gib": 4.0, "batch_size": 16,
             "memory_kind": "cuda_max_memory_allocated"},
            {"id": "bf16_lora_ckpt", "status": "ok", "images_per_s": 9.0, "peak_mem_gib": 1.0, "batch_size": 16,
             "memory_kind": "cuda_max_memory_allocated"}]
    _add_ratios(rows)
    assert rows[1]["speed_vs_bf16_full"] == pytest.approx(0.9) and rows[1]["memory_vs_bf16_full"] == 0.25


def test_inference_rows_measure_reuse_predictor_and_scaling(tmp_path):
    """MC dropout with one encoding matches re-encoding; sam2tune's propagation and SAM2VideoPredictor, with the same
    weights, volume and boxes, agree; the scaling curves have their points; the Markdown and the PNG render them."""
    from sam2tune.plots.speed import plot_propagation_scaling
    from sam2tune.speed.inference import mc_dropout_row, predictor_row, propagation_scaling
    from sam2tune.speed.report import inference_table

    cpu = torch.device("cpu")
    mc = mc_dropout_row("tiny", 64, cpu, samples=3, repeats=1)
    assert mc["max_abs_diff"] < 1e-5 and mc["reencode_s"] > 0 and mc["encode_once_s"] > 0
    pr = predictor_row("tiny", 64, cpu, size=48, depth=5, objects=2)
    assert pr["mask_agreement"] > 0.9 and pr["sam2tune_s"] > 0 and pr["predictor_s"] > 0
    scaling = propagation_scaling("tiny", 64, cpu, 48, objects=(1, 2), depths=(3, 5), fixed_depth=4, fixed_objects=1)
    assert [(r["curve"], r["objects"], r["depth"]) for r in scaling] == [
        ("objects", 1, 4), ("objects", 2, 4), ("slices", 1, 3), ("slices", 1, 5)]
    md = inference_table({"inference": {"mc_dropout": mc, "predictor": pr, "scaling": scaling}})
    assert "one encoding" in md and "SAM2VideoPredictor" in md and "| slices | 1 | 5 |" in md
    assert Path(plot_propagation_scaling(scaling, str(tmp_path / "s.png"))).stat().st_size > 1000
