"""Typed whitelists for every value that reaches a bundle config from outside the server process.

Train request bodies, infer request options, `--conf` settings and SAM2TUNE_ML_* environment settings all pass
through :func:`check_value` with one :class:`Spec` per key before anything is built from them. Bundle configs are
MONAI ConfigParser documents in which a string starting with ``$`` is evaluated as Python, ``@`` is a reference and
``%`` a macro, so a value from outside that could be read that way is refused, whatever its key. Enums are checked
against their known values, numbers against a range, booleans go through :func:`sam2tune.utils.as_bool` (the one
parser); the error names the key and what it accepts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sam2tune.utils import as_bool

FINETUNE_STRATEGIES = ("full", "decoder_only", "lora", "adapter", "prompt")
SAM2_VARIANTS = ("tiny", "small", "base_plus", "large")
UNCERTAINTIES = ("entropy", "variance")
RESULT_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".png")
_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d{1,2})$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_GPUS = re.compile(r"^(all|\d{1,2}(,\d{1,2})*)$")
_CONFIG_SIGILS = ("$", "@", "%")


class InputError(ValueError):
    """A value from outside that its key does not accept; `key` names it, the message says what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def config_reference(value: str) -> bool:
    """True when a bundle config could read `value` as code, a reference or a macro ($..., @..., %..., or a # path)."""
    text = value.strip()
    return text.startswith(_CONFIG_SIGILS) or "#" in text


def check_plain_string(value: Any, key: str, where: str) -> str:
    """`value` as a str that no bundle config can evaluate; InputError naming `key` otherwise.

    Args:
        value: the raw value (must be a str).
        key: the key it arrived under (named in the error).
        where: what it arrived through ("train request", "--conf", ...), for the message.

    Returns:
        The string, unchanged.
    """
    if not isinstance(value, str):
        raise InputError(key, f"{where} {key}: expected a string, got {type(value).__name__} {value!r}.")
    if "\x00" in value:
        raise InputError(key, f"{where} {key}: the value holds a NUL character.")
    if config_reference(value):
        raise InputError(key, f"{where} {key}={value!r} is refused: values starting with '$', '@' or '%', or holding "
                              f"'#', would be read as code or references by the bundle config.")
    return value


@dataclass(frozen=True)
class Spec:
    """What one key accepts.

    Attributes:
        kind: "int", "float", "bool", "enum", "name" (a plain identifier-like name), "device", "path", "gpus",
            or "names" (comma-separated plain names).
        low / high: inclusive range for numbers (None = unbounded); `low_open` makes the low end exclusive.
        choices: allowed values of an "enum" (strings).
        allow_empty: "" (and None) is accepted (means "use the default").
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    allow_empty: bool = False

    def allowed(self) -> str:
        """Human description of the accepted values."""
        empty = " or '' (default)" if self.allow_empty else ""
        if self.kind == "enum":
            return f"one of {list(self.choices)}{empty}"
        if self.kind in ("int", "float"):
            lo = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '<='} "
            hi = "" if self.high is None else f" <= {self.high:g}"
            return f"{'an integer' if self.kind == 'int' else 'a number'} {lo}x{hi}".replace("  ", " ") + empty
        return {
            "bool": "true or false (also 1/0, yes/no, on/off)",
            "name": "a plain name (letters, digits, _ . -; not starting with '.')",
            "device": "'cpu', 'cuda' or 'cuda:N'" + empty,
            "path": "a file or folder path" + empty,
            "gpus": "'all' or comma-separated GPU indices",
            "names": "comma-separated plain names",
        }.get(self.kind, self.kind)


def _number(value: Any, key: str, spec: Spec, where: str) -> int | float:
    if isinstance(value, bool):
        raise InputError(key, f"{where} {key}={value!r}: expected {spec.allowed()}.")
    try:
        if spec.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number: int | float = int(value) if not isinstance(value, str) else int(value.strip())
        else:
            number = float(value)
    except (TypeError, ValueError):
        raise InputError(key, f"{where} {key}={value!r}: expected {spec.allowed()}.") from None
    bad = not math.isfinite(number)
    bad = bad or (spec.low is not None and (number <= spec.low if spec.low_open else number < spec.low))
    bad = bad or (spec.high is not None and number > spec.high)
    if bad:
        raise InputError(key, f"{where} {key}={value!r} is out of range: expected {spec.allowed()}.")
    return number


def check_value(key: str, value: Any, spec: Spec, where: str = "request") -> Any:
    """One outside value -> its typed, checked form; InputError naming `key` and the allowed values otherwise.

    Args:
        key: the key the value arrived under.
        value: the raw value (JSON value or string from the command line / environment).
        spec: what `key` accepts.
        where: "train request", "infer request", "--conf", ... (named in the error).

    Returns:
        int / float / bool / str, ready to go into a bundle override.
    """
    if value is None and spec.allow_empty:
        return None
    if isinstance(value, str):
        check_plain_string(value, key, where)  # whatever the type: never something a config evaluates
    if spec.kind in ("int", "float"):
        return _number(value, key, spec, where)
    if spec.kind == "bool":
        try:
            return as_bool(value, f"{where} {key}")
        except ValueError as err:
            raise InputError(key, str(err)) from None
    text = check_plain_string(value, key, where).strip()
    if text == "" and spec.allow_empty:
        return ""
    ok = {
        "enum": lambda t: t in spec.choices,
        "name": lambda t: bool(_NAME.match(t)),
        "device": lambda t: bool(_DEVICE.match(t)),
        "path": lambda t: t != "",
        "gpus": lambda t: bool(_GPUS.match(t)),
        "names": lambda t: all(_NAME.match(p.strip()) for p in t.split(",") if p.strip()) and bool(t.strip(", ")),
    }.get(spec.kind)
    if ok is None:
        raise ValueError(f"Spec kind {spec.kind!r} of {key} is unknown.")
    if not ok(text):
        raise InputError(key, f"{where} {key}={value!r}: expected {spec.allowed()}.")
    return text


def check_mapping(values: Mapping[str, Any], specs: Mapping[str, Spec], where: str, unknown: str = "refuse",
                  ignore: Sequence[str] = (), hidden: Sequence[str] = ()) -> dict[str, Any]:
    """A request body / settings dict -> {key: checked value} for the keys of `specs`.

    Args:
        values: what arrived.
        specs: the whitelist, one Spec per key.
        where: named in errors ("train request", "--conf", ...).
        unknown: "refuse" (InputError naming the key and listing the allowed ones) or "keep" (left out of the
            result, but string values are still refused when a config could evaluate them).
        ignore: keys passed through unchecked and left out of the result (e.g. MONAI Label's own `model`).
        hidden: whitelisted keys left out of the "allowed keys" list of the message (clients' bookkeeping keys).

    Returns:
        The checked values of the whitelisted keys present in `values`.
    """
    if not isinstance(values, Mapping):
        raise InputError("params", f"{where} expected a JSON object of key/value pairs, got {type(values).__name__}.")
    out = {}
    for key, value in values.items():
        if key in ignore:
            continue
        if key in specs:
            out[key] = check_value(key, value, specs[key], where)
        elif unknown == "refuse":
            raise InputError(
                key, f"{where} unknown key {key!r}; allowed keys: {sorted(k for k in specs if k not in hidden)}."
            )
        elif isinstance(value, str):
            check_plain_string(value, key, where)
    return out


# ---- the whitelists --------------------------------------------------------------------------------------------------
TRAIN_SPECS: dict[str, Spec] = {
    "max_epochs": Spec("int", 1, 100_000),
    "learning_rate": Spec("float", 0.0, 1.0, low_open=True),
    "batch_size": Spec("int", 1, 4096),
    "finetune": Spec("enum", choices=FINETUNE_STRATEGIES),
    "label_tag": Spec("name"),
    "val_interval": Spec("int", 1, 1_000_000),
    "amp": Spec("bool"),
    "correction_rounds": Spec("int", 0, 32),  # corrective clicks per sample in training (the bundle's key)
    "first_prompt": Spec("enum", choices=("box", "click", "mixed")),
    "gpus": Spec("gpus"),  # MONAI Label's own key: CUDA_VISIBLE_DEVICES of the training process
    "client_id": Spec("name", allow_empty=True),  # monailabel.client adds it to every request
    "local_rank": Spec("int", 0, 1024),  # MONAI Label's training process adds it (its --local_rank)
}
TRAIN_BOOKKEEPING = ("gpus", "client_id", "local_rank")  # accepted, but not options a user sets

INFER_SPECS: dict[str, Spec] = {
    "threshold": Spec("float", 0.0, 1.0),
    "propagate": Spec("bool"),
    "label": Spec("path"),  # a label name (checked against the model's labels) or the upload MONAI Label wrote
    "label_tag": Spec("name"),
    "result_extension": Spec("enum", choices=RESULT_EXTENSIONS, allow_empty=True),
    "device": Spec("device", allow_empty=True),
    "save_label": Spec("bool"),
    "reset": Spec("bool"),  # interactive: start over instead of refining the session's previous mask
}  # clicks / ROI (foreground, background, roi) are typed by sam2tune.monailabel.prompts.parse_prompts

SETTINGS_SPECS: dict[str, Spec] = {
    "models": Spec("names"),
    "model_dir": Spec("path", allow_empty=True),
    "sam2_variant": Spec("enum", choices=SAM2_VARIANTS, allow_empty=True),
    "image_size": Spec("int", 0, 4096),
    "pretrained_checkpoint": Spec("path", allow_empty=True),
    "device": Spec("device", allow_empty=True),
    "finetune": Spec("enum", choices=FINETUNE_STRATEGIES),
    "max_epochs": Spec("int", 1, 100_000),
    "learning_rate": Spec("float", 0.0, 1.0, low_open=True),
    "batch_size": Spec("int", 1, 4096),
    "mc_samples": Spec("int", 1, 1000),
    "dropout": Spec("float", 0.0, 0.95),
    "uncertainty": Spec("enum", choices=UNCERTAINTIES),
    "al_max_images": Spec("int", 1, 1_000_000),
    "threshold": Spec("float", 0.0, 1.0),
    "amp": Spec("bool", allow_empty=True),
    "auto_update": Spec("bool"),
    "update_steps": Spec("int", 1, 100_000),
    "update_replay": Spec("int", 0, 100_000),
    "update_learning_rate": Spec("float", 0.0, 1.0, low_open=True),
    "embedding_cache": Spec("int", 0, 1_000_000),
}


def check_device(device: str, key: str = "device") -> str:
    """A device string that is safe to format into a config expression: 'cpu', 'cuda' or 'cuda:N'.

    Args:
        device: the device string.
        key: named in the error.

    Returns:
        `device`, stripped.
    """
    return check_value(key, device, Spec("device"), "device")


__all__ = [
    "FINETUNE_STRATEGIES", "INFER_SPECS", "InputError", "RESULT_EXTENSIONS", "SAM2_VARIANTS", "SETTINGS_SPECS",
    "Spec", "TRAIN_SPECS", "check_device", "check_mapping", "check_plain_string", "check_value", "config_reference",
]
