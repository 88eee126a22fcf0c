"""Run every benchmark row in one process, each isolated (an error or OOM is recorded, the others still run)."""

from __future__ import annotations

import logging
import platform
import sys
import time
from dataclasses import dataclass, field

import torch

from sam2tune.speed.measure import reset_memory
from sam2tune.speed.training import BASELINE_ROW, Row, row_info, run_row, select_rows

logger = logging.getLogger(__name__)

# Dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, from NVIDIA's data sheets; --peak_tflops overrides.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


@dataclass
class BenchmarkSettings:
    """What to measure: device, model size, batch, steps, which rows, options (compile auto = only on CUDA)."""

    device: str = "cpu"
    image_size: int = 1024
    variant: str = "tiny"
    batch_size: int = 16
    steps: int = 10
    warmup: int = 2
    strategies: str | None = None
    compile: str = "auto"
    channels_last: bool = False
    peak_tflops: float | None = None
    pipeline: bool = True
    pipeline_workers: int = 4
    pipeline_batches: int = 4
    pipeline_source_size: int = 512
    pipeline_row: str = "bf16_decoder_only"
    cpu_bf16: bool = False
    pipeline_data_dir: str | None = None
    # 3D row: slices, in-plane size, objects, timed repeats (the 512x512x100, 13 organs)
    volume_depth: int = 100
    volume_size: int = 512
    volume_objects: int = 13
    volume_repeats: int = 3
    # inference rows: MC dropout with one encoding, propagation vs SAM2VideoPredictor, scaling curves
    inference: bool = False  # scripts/benchmark.py turns it on unless --no_inference
    mc_samples: int = 10
    inference_depth: int = 32
    inference_size: int = 64
    inference_objects: int = 4
    command: str = field(default_factory=lambda: " ".join(sys.argv))


def device_name(device: torch.device) -> str:
    """Human name of the device (GPU model, or CPU model and thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def peak_tflops_for(name: str) -> float | None:
    """The bf16 dense peak for a known GPU name, else None."""
    for fragment, value in PEAK_BF16_TFLOPS.items():
        if fragment in name:
            return value
    return None


def _compile_enabled(setting: str, device: torch.device) -> tuple[bool, str]:
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, got {setting!r}.")
    if setting == "off":
        return False, "compile off (--compile off)"
    if setting == "auto" and device.type != "cuda":
        return False, "torch.compile rows run on CUDA only by default (--compile on forces them)"
    return True, ""


def propagation_row(settings: BenchmarkSettings, device: torch.device) -> dict:
    """Seconds to propagate a (depth, 1, size, size) volume, N boxed objects, both directions (encoder included)."""
    from sam2tune.networks import SAM2Segmenter
    from sam2tune.speed.propagation import time_propagation

    net = SAM2Segmenter(settings.variant, settings.image_size, pretrained_checkpoint=None, in_channels=1)
    out = time_propagation(net, depth=settings.volume_depth, size=settings.volume_size,
                           num_objects=settings.volume_objects, device=str(device), amp=device.type == "cuda",
                           repeats=settings.volume_repeats)
    return {
        "status": "ok",
        "name": f"3D propagation {settings.volume_size}x{settings.volume_size}x{settings.volume_depth}, "
        f"{settings.volume_objects} organs, both directions",
        **out,
    }


def run_benchmark(settings: BenchmarkSettings) -> dict:
    """Measure the selected rows (and the data pipeline) -> JSON-ready dict with device, settings, rows, ratios."""
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu).")
    name = device_name(device)
    peak = settings.peak_tflops or (peak_tflops_for(name) if device.type == "cuda" else None)
    # TF32 stays at PyTorch's defaults: the fp32 rows stand for plain loops that never switch it on.
    compile_ok, compile_reason = _compile_enabled(settings.compile, device)
    rows = select_rows(settings.strategies)
    results = []
    start = time.perf_counter()
    for row in rows:
        entry = {**row_info(row), "status": "ok"}
        logger.info("benchmark row: %s", row.name)
        reset_memory(device)
        try:
            if row.kind == "3d":
                entry |= propagation_row(settings, device)
            elif row.compile and not compile_ok:
                entry |= {"status": "skipped", "reason": compile_reason}
            else:
                entry |= run_row(row, settings.variant, settings.image_size, settings.batch_size, device,
                                 settings.steps, settings.warmup, settings.channels_last, peak, settings.cpu_bf16)
        except Exception as e:  # noqa: BLE001 - an OOM or a failing option must not lose the other rows
            logger.warning("row %s failed: %s", row.id, e)
            entry |= {"status": "error", "error": f"{type(e).__name__}: {e}"[:1000]}
        results.append(entry)
        if entry["status"] == "ok" and "images_per_s" in entry:
            logger.info("  %.1f images/s, peak %.2f GiB", entry["images_per_s"], entry["peak_mem_gib"])
    _add_ratios(results)
    pipeline = []
    if settings.pipeline:
        reset_memory(device)
        try:
            from sam2tune.speed.pipeline import benchmark_pipeline

            pipeline = benchmark_pipeline(settings.image_size, settings.batch_size, device, settings.variant,
                                          settings.pipeline_batches, settings.pipeline_workers,
                                          settings.pipeline_data_dir, settings.pipeline_source_size,
                                          settings.pipeline_row, settings.cpu_bf16)
        except Exception as e:  # noqa: BLE001
            logger.warning("pipeline benchmark failed: %s", e)
            pipeline = [{"name": "pipeline", "error": f"{type(e).__name__}: {e}"[:1000]}]
    inference = inference_rows(settings, device) if settings.inference else {}
    return {
        "inference": inference,
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "command": settings.command,
        "settings": {k: v for k, v in vars(settings).items() if k != "command"},
        "peak_bf16_tflops": peak,
        "baseline_row": BASELINE_ROW,
        "seconds": time.perf_counter() - start,  # rows + pipeline, without start-up
        "rows": results,
        "pipeline": pipeline,
    }


def inference_rows(settings: BenchmarkSettings, device: torch.device) -> dict:
    """The inference section: MC dropout reuse, propagation vs SAM2VideoPredictor, scaling; each part isolated."""
    from sam2tune.speed.inference import mc_dropout_row, predictor_row, propagation_scaling

    parts = {
        "mc_dropout": lambda: mc_dropout_row(settings.variant, settings.image_size, device, settings.mc_samples,
                                             settings.volume_repeats),
        "predictor": lambda: predictor_row(settings.variant, settings.image_size, device, settings.inference_size,
                                           settings.inference_depth, settings.inference_objects,
                                           settings.volume_repeats),
        "scaling": lambda: propagation_scaling(settings.variant, settings.image_size, device,
                                               settings.inference_size, repeats=settings.volume_repeats),
    }
    out = {}
    for key, run in parts.items():
        logger.info("inference row: %s", key)
        reset_memory(device)
        try:
            out[key] = run()
        except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
            logger.warning("inference row %s failed: %s", key, e)
            out[key] = {"error": f"{type(e).__name__}: {e}"[:1000]}
    return out


def _add_ratios(results: list[dict]) -> None:
    """Speed and memory of each row relative to the plain bf16 full loop measured in the same run."""
    base = next((r for r in results if r["id"] == BASELINE_ROW and r["status"] == "ok"), None)
    for r in results:
        ok = base is not None and r["status"] == "ok" and "images_per_s" in r
        r["speed_vs_bf16_full"] = r["images_per_s"] / base["images_per_s"] if ok else None
        # Process RSS (CPU) is cumulative over rows, so memory ratios are only given for CUDA's per-row peaks.
        same_batch = ok and r["batch_size"] == base["batch_size"] and r["memory_kind"].startswith("cuda")
        r["memory_vs_bf16_full"] = r["peak_mem_gib"] / base["peak_mem_gib"] if same_batch else None


__all__ = ["BenchmarkSettings", "Row", "device_name", "inference_rows", "peak_tflops_for", "propagation_row",
           "run_benchmark"]
