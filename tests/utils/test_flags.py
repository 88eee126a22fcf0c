"""Booleans given as strings ("false", "False", "0") parse as False, in code and in every bundle's amp wiring."""

from __future__ import annotations

import glob
import json
import os

import pytest
from monai.bundle import ConfigParser

from sam2tune.utils import as_bool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("value", [False, None, 0, "false", "False", "FALSE", " 0 ", "no", "off", ""])
def test_false_spellings(value):
    assert as_bool(value) is False


@pytest.mark.parametrize("value", [True, 1, "true", "True", "1", "yes", "on"])
def test_true_spellings(value):
    assert as_bool(value) is True


@pytest.mark.parametrize("value", ["flase", "2", 2, [], "none"])
def test_anything_else_names_the_key(value):
    with pytest.raises(ValueError, match="amp must be true or false"):
        as_bool(value, "amp")


def _amp_users(config: dict, prefix: str = "") -> list[str]:
    """Config ids whose value reads @amp (e.g. 'train#trainer#amp')."""
    out = []
    for key, value in config.items() if isinstance(config, dict) else enumerate(config):
        cid = f"{prefix}{key}"
        if isinstance(value, dict | list):
            out += _amp_users(value, cid + "#")
        elif isinstance(value, str) and "@amp" in value:
            out.append(cid)
    return out


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "bundles", "*", "configs", "*.json"))),
                         ids=lambda p: "/".join(p.split(os.sep)[-3::2]))
def test_bundle_amp_override_false_is_false(path):
    """`monai.bundle run ... --amp false` hands the configs the string 'false' (fire keeps it a str)."""
    with open(path) as fh:
        config = json.load(fh)
    users = _amp_users(config)
    for cid in users:  # every use goes through as_bool, none passes the raw (truthy) string on
        value = ConfigParser(config)[cid]
        assert "as_bool(@amp" in value, f"{cid} uses @amp raw: {value}"
    direct = [c for c in users if ConfigParser(config)[c].startswith("$sam2tune.utils.as_bool(@amp")]
    for cid in direct:
        for raw, expected in (("false", False), ("False", False), ("0", False), ("true", True), (False, False)):
            parser = ConfigParser(config)
            parser["amp"] = raw
            assert parser.get_parsed_content(cid) is expected, (cid, raw)
