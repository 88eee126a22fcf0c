"""Prompt simulation from label maps: boxes, clicks, instance and class selection (numpy; torch accepted)."""

from .simulate import (
    NEGATIVE,
    PADDING,
    POSITIVE,
    as_numpy,
    connected_instances,
    mask_to_box,
    sample_points,
    select_class,
    select_instance,
)

__all__ = [
    "NEGATIVE",
    "PADDING",
    "POSITIVE",
    "as_numpy",
    "connected_instances",
    "mask_to_box",
    "sample_points",
    "select_class",
    "select_instance",
]
