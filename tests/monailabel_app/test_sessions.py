"""Interactive sessions: when a request refines the previous answer, when it starts over,
the bounded thread-safe store."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from sam2tune.monailabel.infer import suggest_next_click
from sam2tune.monailabel.prompts import parse_prompts
from sam2tune.monailabel.sessions import (
    Click,
    Session,
    SessionStore,
    corrected_slice,
    decide,
    request_clicks,
    request_roi,
)


def _parsed(request: dict, shape=(96, 80)):
    prompts = parse_prompts(request, shape)
    return request_clicks(prompts), request_roi(prompts)


def _session(request: dict, generation: int = 1, shape=(96, 80)) -> Session:
    clicks, roi = _parsed(request, shape)
    return Session(clicks, roi, (), generation, {-1: torch.zeros(1, 1, 16, 16)})


def test_clicks_in_ijk_and_roi_from_a_slicer_request():
    clicks, roi = _parsed({"foreground": [[10, 20], [30.4, 5]], "background": [[1, 2]], "roi": [0, 0, 50, 60]})
    assert clicks == (Click(10, 20, -1, True), Click(30, 5, -1, True), Click(1, 2, -1, False))
    assert roi == ((-1, (0.0, 0.0, 50.0, 60.0)),)
    clicks, roi = _parsed({"foreground": [[3, 4, 2]], "background": [[5, 6, 7]]}, shape=(40, 32, 10))
    assert set(clicks) == {Click(3, 4, 2, True), Click(5, 6, 7, False)} and roi == ()


def test_more_clicks_refine_and_everything_else_starts_over():
    first = {"foreground": [[10, 20]], "roi": [0, 0, 50, 60]}
    stored = _session(first)
    more = {"foreground": [[10, 20], [40, 40]], "background": [[2, 3]], "roi": [0, 0, 50, 60]}
    d = decide(stored, *_parsed(more), (), 1)
    assert d.refined and d.reason == "extended"
    assert d.new_clicks == (Click(40, 40, -1, True), Click(2, 3, -1, False))
    # Slicer's list order does not matter
    reordered = {"foreground": [[40, 40], [10, 20]], "roi": [0, 0, 50, 60]}
    assert decide(stored, *_parsed(reordered), (), 1).refined

    cases = {
        "reset": (more, 1, True),
        "roi changed": ({**more, "roi": [0, 0, 50, 61]}, 1, False),
        "clicks changed": ({"foreground": [[11, 20], [40, 40]], "roi": [0, 0, 50, 60]}, 1, False),
        "same clicks": (first, 1, False),
        "weights changed": (more, 2, False),
    }
    for reason, (request, generation, reset) in cases.items():
        d = decide(stored, *_parsed(request), (), generation, reset)
        assert (d.refined, d.reason) == (False, reason)
    assert decide(None, *_parsed(more), (), 1).reason == "new"
    assert decide(stored, *_parsed({**more, "roi": None}), (), 1).reason == "roi changed"  # ROI dropped
    assert decide(stored, *_parsed(more), (("propagate", False),), 1).reason == "options changed"
    # a removed click: fewer clicks than stored
    stored2 = _session(more)
    assert (
        decide(stored2, *_parsed({"foreground": [[10, 20], [40, 40]], "roi": [0, 0, 50, 60]}), (), 1).reason
        == "clicks changed"
    )


def test_a_repeated_click_counts_once_per_occurrence():
    stored = _session({"foreground": [[5, 5]]})
    d = decide(stored, *_parsed({"foreground": [[5, 5], [5, 5]]}), (), 1)
    assert d.refined and d.new_clicks == (Click(5, 5, -1, True),)


def test_corrected_slice_is_where_the_new_clicks_are():
    assert corrected_slice([Click(1, 1, 4, True)]) == 4
    assert corrected_slice([Click(1, 1, 4, True), Click(2, 2, 7, False), Click(3, 3, 7, True)]) == 7
    assert corrected_slice([Click(1, 1, 4, True), Click(2, 2, 7, False)]) == 7  # a tie: the last one sent


def test_store_is_a_bounded_lru():
    store = SessionStore(capacity=2)
    a, b, c = (_session({"foreground": [[i, i]]}) for i in (1, 2, 3))
    store.put("a", a)
    store.put("b", b)
    assert store.get("a") is a  # "a" is now the most recent
    store.put("c", c)
    assert len(store) == 2 and store.get("b") is None and store.get("a") is a and store.get("c") is c
    store.clear()
    assert len(store) == 0
    with pytest.raises(ValueError, match="capacity"):
        SessionStore(0)


def test_store_is_thread_safe():
    store = SessionStore(capacity=64)
    session = _session({"foreground": [[1, 1]]})
    errors = []

    def work(t):
        try:
            for i in range(300):
                store.put((t, i % 80), session)
                store.get((t, (i * 7) % 80))
        except Exception as err:  # an OrderedDict mutated concurrently raises RuntimeError / KeyError
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(store) == 64


def test_suggested_click_in_ijk_on_the_most_uncertain_slice():
    sure = np.zeros((20, 30), np.float32)
    assert suggest_next_click({-1: sure}) is None
    unsure = sure.copy()
    unsure[5:15, 20:28] = 0.45  # rows are J, columns are I; the model calls it background -> suggest "positive"
    s = suggest_next_click({-1: unsure})
    assert s["label"] == "positive" and 20 <= s["point"][0] < 28 and 5 <= s["point"][1] < 15 and len(s["point"]) == 2
    assert 0.8 < s["score"] <= 1.0
    few = sure.copy()
    few[0:3, 0:3] = 0.6
    s = suggest_next_click({0: few, 1: sure, 2: unsure})  # slice 2 holds the most uncertain pixels
    assert s["point"][2] == 2 and 20 <= s["point"][0] < 28 and s["label"] == "positive"
    s = suggest_next_click({0: few, 1: sure})
    assert s["point"][2] == 0 and s["label"] == "negative" and s["point"][0] < 3 and s["point"][1] < 3
