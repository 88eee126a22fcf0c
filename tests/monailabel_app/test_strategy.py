"""Epistemic active learning: MC-dropout scores of an image, its embedding computed once and reused."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.settings import AppSettings
from sam2tune.monailabel.strategy import EpistemicStrategy

MODEL = "optic_cup_fundus_sam2"


def test_scoring_again_reuses_the_embedding_and_gives_the_same_score(tmp_path):
    settings = AppSettings(model_dir=str(tmp_path / "model"), sam2_variant="tiny", image_size=64, device="cpu")
    torch.manual_seed(0)
    model = BundleModel(MODEL, settings, dropout=0.2)
    model.network()  # built (random init draws from the RNG) before the seeded scores
    path = str(tmp_path / "a.png")
    Image.fromarray((np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8)).save(path)
    strategy = EpistemicStrategy({MODEL: model}, num_samples=4)
    torch.manual_seed(1)
    first = strategy.score(model, path)
    assert model.embedding_stats() == {"kept": 1, "hits": 0, "misses": 1}
    torch.manual_seed(1)
    again = strategy.score(model, path)
    assert model.embedding_stats()["hits"] == 1 and again == first  # same random state, same score, no re-encoding
    torch.manual_seed(2)
    assert strategy.score(model, path) != first  # MC dropout: another random state, another score
