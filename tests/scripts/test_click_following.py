"""sam2tune.tools.click_following: the two-disc task is true by construction, the checks read the model's answers,
and the table comes from the per-seed rows (the full training runs in
tests/monailabel_app/test_server_click_following.py)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from sam2tune.tools import click_following as cf


def test_two_discs_are_identical_apart_and_boxed():
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, (a, b), centres, radii = cf.two_discs(rng)
        assert img.shape == (3, cf.SIZE, cf.SIZE) and not (a & b).any()
        assert np.hypot(*(centres[0] - centres[1])) > radii.sum() + 30
        assert abs(img[0][a].mean() - img[0][b].mean()) < 0.02 and img[0][a].mean() > img[0][~(a | b)].mean() + 0.5
        x0, y0, x1, y1 = cf.box_around(centres, radii)
        yy, xx = np.nonzero(a | b)
        assert x0 <= xx.min() and xx.max() <= x1 and y0 <= yy.min() and yy.max() <= y1


class _Oracle(torch.nn.Module):
    """A stand-in segmenter that answers "A" to a click on A and "both" to a box: each check's rule is exercised."""

    image_size = 64

    def encode(self, image):
        return {"image": image}

    def decode(self, feats, box, points, labels, mask, scale):
        img = feats["image"][0, 0]
        bright = img > 0.5
        yy, xx = torch.meshgrid(torch.arange(cf.SIZE), torch.arange(cf.SIZE), indexing="ij")
        out = torch.zeros_like(img, dtype=torch.bool)
        if box is not None:
            out = bright.clone()
        for (x, y), lab in zip(points[0].tolist(), labels[0].tolist(), strict=True):
            near = (xx - x) ** 2 + (yy - y) ** 2 <= 13 ** 2
            if lab == 1:
                out |= bright & near
            elif lab == 0:
                out &= ~near
        return (out.float() * 20 - 10)[None, None], None


def test_the_checks_pass_an_oracle_and_fail_a_model_that_ignores_prompts():
    rows = cf.evaluate_click_following(_Oracle(), photos=4)
    assert all(r[c] for r in rows for c in cf.CHECKS), rows

    class Ignores(_Oracle):
        def decode(self, feats, box, points, labels, mask, scale):
            return ((feats["image"][0, 0] > 0.5).float() * 20 - 10)[None, None], None

    rows = cf.evaluate_click_following(Ignores(), photos=4)
    assert not any(r["click"] or r["grow"] or r["shrink"] for r in rows) and all(r["box"] for r in rows)


def test_table_and_bad_arguments(tmp_path):
    row = {c: 0.5 for c in cf.COLUMNS} | {"seed": 3, "photos": 10, **{f"{c}_pass": 9 for c in cf.CHECKS}}
    cf.write_tables([row], str(tmp_path), {"steps": 1500, "warmup": 100, "clip": 1.0})
    assert list(csv.DictReader(open(tmp_path / "click_following.csv")))[0]["seed"] == "3"
    assert json.loads((tmp_path / "click_following.json").read_text())["setting"]["warmup"] == 100
    assert "| 3 | 0.50 / 0.50 |" in (tmp_path / "click_following.md").read_text()
    for bad in (["--seeds", "1,x"], ["--steps", "0"], ["--clip", "-1"]):
        with pytest.raises(SystemExit):
            cf.main(bad)
