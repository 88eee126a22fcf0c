"""Prompt simulation from label maps: boxes, clicks, corrective clicks, per-slice object prompts (numpy or torch).

One box rule (tight, inclusive ``mask_to_box``) and one click rule (``sample_points(center=True)`` for the first click,
``error_click`` for corrections) serve every bundle, 2D and 3D, and the MONAI Label app.
"""

from .corrections import CLICK_MODES, error_click, error_slice, sample_error_clicks
from .objects import PROMPT_MODES, add_click, click_as_key, object_prompt
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
from .suggest import SuggestedClick, suggest_click, uncertainty_map

__all__ = [
    "CLICK_MODES",
    "PROMPT_MODES",
    "add_click",
    "click_as_key",
    "error_click",
    "error_slice",
    "object_prompt",
    "SuggestedClick",
    "sample_error_clicks",
    "suggest_click",
    "uncertainty_map",
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
