"""Public paths: every sam2tune ``_target_`` reads ``sam2tune.<subpackage>.<Name>`` and resolves; ``__all__`` imports.

A bundle names sam2tune objects only by their public path (re-exported in the subpackage's ``__init__``, as MONAI
does), so modules can move inside a subpackage without breaking a bundle someone has downloaded.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from monai.utils.module import locate  # what MONAI's ConfigComponent uses to resolve `_target_`

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(REPO.glob("bundles/*/configs/*.json"))
# Python code that builds bundle configs (overrides) with `_target_` strings
SOURCES = sorted(p for d in ("sam2tune", "monailabel_app", "scripts") for p in (REPO / d).rglob("*.py"))
TARGET_IN_SOURCE = re.compile(r"""["']_target_["']\s*:\s*["'](sam2tune\.[^"']*)["']""")


def _targets(node, where: str = "") -> Iterator[tuple[str, str]]:
    """(config id, target) for every ``_target_`` in a parsed config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield where, value
            else:
                yield from _targets(value, f"{where}#{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}#{i}")


@functools.cache
def _sam2tune_targets() -> dict[str, list[str]]:
    """{target: where it is named} for every sam2tune ``_target_`` of the bundle configs and the Python sources."""
    found: dict[str, list[str]] = {}
    for path in CONFIGS:
        name = str(path.relative_to(REPO))
        for where, target in _targets(json.loads(path.read_text())):
            if target.startswith("sam2tune."):
                found.setdefault(target, []).append(f"{name}: {where}")
    for path in SOURCES:
        for target in TARGET_IN_SOURCE.findall(path.read_text()):
            found.setdefault(target, []).append(str(path.relative_to(REPO)))
    return found


def _subpackages() -> list[str]:
    """Every package under sam2tune/ (a folder with __init__.py), dotted."""
    root = REPO / "sam2tune"
    return sorted(".".join(("sam2tune", *p.parent.relative_to(root).parts)) for p in root.rglob("__init__.py")
                  if p.parent != root)


def test_every_bundle_config_is_scanned_and_names_sam2tune_objects():
    bundles = {p.parts[-3] for p in CONFIGS}
    assert len(bundles) >= 5 and all((REPO / "bundles" / b / "configs" / "train.json") in CONFIGS for b in bundles)
    named = _sam2tune_targets()
    assert len(named) > 30 and sum(map(len, named.values())) > 100  # the scan found the bundles' sam2tune targets


@pytest.mark.parametrize("target", sorted(_sam2tune_targets()))
def test_target_is_a_public_path_that_resolves(target):
    where = ", ".join(_sam2tune_targets()[target][:3])
    parts = target.split(".")
    assert len(parts) == 3, f"{where}: {target!r} must read sam2tune.<subpackage>.<Name> (re-export it in __init__)"
    package = importlib.import_module(".".join(parts[:2]))
    assert parts[2] in getattr(package, "__all__", ()), f"{where}: {parts[2]} is not in {parts[1]}'s __all__"
    obj = locate(target)
    assert obj is getattr(package, parts[2]) and (inspect.isclass(obj) or inspect.isfunction(obj)), (where, target)


@pytest.mark.parametrize("name", _subpackages())
def test_every_name_in_a_subpackage_all_is_importable(name):
    package = importlib.import_module(name)
    exported = list(getattr(package, "__all__", ()))
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(package, n)]
    assert not missing, f"{name}.__all__ names {missing}, which {name} does not define or import"
