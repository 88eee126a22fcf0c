"""The dependency rule of docs/architecture.md, enforced: model code imports without the training stack.

Each case imports some sam2tune packages in a fresh interpreter whose import hook records, for every module, the
module whose code imported it; a forbidden module in ``sys.modules`` fails the test with its import chain.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Training-side packages that model code (networks, finetune, prompts, transforms) must not load.
TRAINING = ("sam2tune.engines", "sam2tune.handlers", "sam2tune.monailabel", "sam2tune.losses", "sam2tune.plots")

# Runs in the child: records the importer of each module at its first import, then imports argv[1:].
_PROBE = r"""
import importlib, json, sys

importers = {}


class _Recorder:
    def find_spec(self, name, path=None, target=None):
        if name not in importers:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen_")):
                frame = frame.f_back
            importers[name] = frame.f_globals.get("__name__", "?") if frame is not None else "?"
        return None  # only watch: the normal finders load the module


sys.meta_path.insert(0, _Recorder())
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"modules": sorted(sys.modules), "importers": importers}))
"""


def _probe(*packages: str) -> tuple[list[str], dict[str, str]]:
    """Import `packages` in a fresh interpreter -> (sorted sys.modules, module -> the module that imported it)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *packages], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"importing {packages} failed in a fresh interpreter:\n{result.stderr[-3000:]}"
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out["modules"], out["importers"]


def _chain(module: str, importers: dict[str, str]) -> list[str]:
    """`module` and the modules that imported it, back to the first import (``__main__`` = the probe itself)."""
    chain = [module]
    while chain[-1] in importers and importers[chain[-1]] not in chain:
        chain.append(importers[chain[-1]])
    return chain


def _under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _violations(modules: list[str], importers: dict[str, str], forbidden: tuple[str, ...]) -> list[str]:
    """One line per loaded top-level forbidden package: its import chain, innermost first."""
    lines = []
    for root in forbidden:
        loaded = [m for m in modules if _under(m, (root,))]
        if loaded:
            first = min(loaded, key=len)  # the package itself, or the first of its modules loaded
            lines.append(f"{root} ({len(loaded)} modules), imported via: " + " <- ".join(_chain(first, importers)))
    return lines


def test_chain_names_every_importer() -> None:
    importers = {"ignite": "monai.utils.enums", "monai.utils.enums": "monai", "monai": "sam2tune.transforms.ct"}
    assert _chain("ignite", importers) == ["ignite", "monai.utils.enums", "monai", "sam2tune.transforms.ct"]
    assert _chain("a", {"a": "b", "b": "a"}) == ["a", "b"]  # a cycle stops instead of looping
    lines = _violations(["ignite", "ignite.engine", "torch"], importers, ("ignite", "sam2tune.engines"))
    assert lines == ["ignite (2 modules), imported via: ignite <- monai.utils.enums <- monai <- sam2tune.transforms.ct"]


@pytest.mark.parametrize(
    "packages",
    [("sam2tune.networks", "sam2tune.finetune"), ("sam2tune.prompts",)],
    ids=["networks+finetune", "prompts"],
)
def test_model_packages_load_no_training_stack(packages: tuple[str, ...]) -> None:
    modules, importers = _probe(*packages)
    assert set(packages) <= set(modules)
    # the hook saw the imports (else an empty chain would hide the culprit)
    assert all(p in importers for p in packages)
    bad = _violations(modules, importers, ("ignite", *TRAINING))
    rule = "docs/architecture.md, Dependency rule"
    assert not bad, f"importing {', '.join(packages)} loads training code ({rule}):\n" + "\n".join(bad)


def test_transforms_load_no_training_code() -> None:
    modules, importers = _probe("sam2tune.transforms")
    assert "sam2tune.transforms" in modules
    bad = _violations(modules, importers, TRAINING)
    # `import monai` itself loads ignite (monai.utils.enums optional_import): allowed, but from nowhere else.
    if "ignite" in modules:
        chain = _chain("ignite", importers)
        if not chain[1].startswith("monai"):
            bad.append("ignite, imported via: " + " <- ".join(chain))
    rule = "docs/architecture.md, Dependency rule"
    assert not bad, f"importing sam2tune.transforms loads training code ({rule}):\n" + "\n".join(bad)
