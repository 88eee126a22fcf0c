"""Command-line tools for people: each module is ``python -m sam2tune.tools.<name>``, most also a console script.

| module | console script | ``scripts/`` wrapper |
|---|---|---|
| ``make_phantoms`` | ``sam2tune-phantoms`` | ``scripts/make_phantoms.py`` |
| ``demo`` | ``sam2tune-demo`` | ``scripts/demo.py`` (``make demo``) |
| ``benchmark`` | ``sam2tune-benchmark`` | ``scripts/benchmark.py`` |
| ``train_baseline`` | ``sam2tune-train-baseline`` | ``scripts/train_baseline.py`` |
| ``compare`` | ``sam2tune-compare`` | ``scripts/compare.py`` |
| ``ablation`` | ``sam2tune-ablation`` | ``scripts/ablation.py`` |
| ``rank_ablation`` | ``sam2tune-rank-ablation`` | ``scripts/rank_ablation.py`` |
| ``interactive_table`` | ``sam2tune-interactive-table`` | ``scripts/interactive_table.py`` |
| ``seed_study`` | ``sam2tune-seed-study`` | ``scripts/seed_study.py`` |
| ``click_following`` | ``sam2tune-click-following`` | ``scripts/click_following.py`` |
| ``diagnose_propagation`` | (``python -m`` only) | ``scripts/diagnose_propagation.py`` |
| ``sam2_manifest`` | (``python -m`` only, maintainers) | ``scripts/sam2_manifest.py`` |

``python -m sam2tune.bundles export|list`` (console script ``sam2tune-bundles``) hands a bundle over.
A bundle named on a tool's command line is found by ``sam2tune.bundles.bundle_root`` (``$SAM2TUNE_BUNDLES/<name>``
or ``./bundles/<name>``: run from the checkout root, or set the variable); a bundle folder is taken as given.
"""

from __future__ import annotations

import json
from pathlib import Path

# The checkout sam2tune is installed from (``pip install -e .``): where the shared run-time override files live.
CHECKOUT = Path(__file__).resolve().parents[2]
TINY_CONFIG = CHECKOUT / "configs" / "cpu_tiny.json"


def tiny_settings() -> dict:
    """The shared tiny CPU overrides, ``configs/cpu_tiny.json`` of the sam2tune checkout (what ``--tiny`` applies).

    Returns:
        {config id: value}.

    Raises:
        FileNotFoundError: sam2tune is not installed from a checkout holding that file.
    """
    if not TINY_CONFIG.is_file():
        raise FileNotFoundError(f"--tiny reads {TINY_CONFIG}, which does not exist: install sam2tune from its "
                                "checkout (pip install -e .) or pass the settings as flags instead of --tiny.")
    return json.loads(TINY_CONFIG.read_text())
