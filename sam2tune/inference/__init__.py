"""Imperative inference pipelines on whole new volumes (no label): prompts file -> label map + reports.

``prompts`` reads the prompts file, ``outputs`` writes what every pipeline writes (NIfTI on the input grid,
DICOM SEG, per-slice arrays, result.json), ``volume`` is the abdomen pipeline (SAM2 memory propagation) and
``knee`` the knee pipeline (per-slice prompts, propagation or the learned prompt, plus biomarkers). Bundles call
them from inference.json through ``VolumeInference`` / ``KneeInference``-style one-line ``run`` entries.
"""

from sam2tune.inference.knee import (
    PROMPT_FREE_TISSUES,
    run_knee_inference,
    segment_prompt_free,
    segment_prompted_slices,
)
from sam2tune.inference.outputs import case_name, write_volume_outputs
from sam2tune.inference.prompts import label_id, read_prompts
from sam2tune.inference.volume import run_volume_inference

__all__ = [
    "PROMPT_FREE_TISSUES",
    "case_name",
    "label_id",
    "read_prompts",
    "run_knee_inference",
    "run_volume_inference",
    "segment_prompt_free",
    "segment_prompted_slices",
    "write_volume_outputs",
]
