"""Booleans given as strings ("false", "False", "0") parse as False,
in code and wherever a bundle config reads a flag."""

from __future__ import annotations

import glob
import json
import os
import re

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


def _flag_keys(bundle_dir: str) -> set[str]:
    """Top-level keys of a bundle's configs whose default is true/false (+ amp, whose default is an expression)."""
    keys = {"amp"}
    for path in glob.glob(os.path.join(bundle_dir, "configs", "*.json")):
        with open(path) as fh:
            config = json.load(fh)
        keys |= {k for k, v in config.items() if isinstance(v, bool)} if isinstance(config, dict) else set()
    return keys


def _strings(config, prefix: str = ""):
    """(config id, string value) of every string in a config (e.g. ('train#trainer#amp', '$...'))."""
    for key, value in config.items() if isinstance(config, dict) else enumerate(config):
        cid = f"{prefix}{key}"
        if isinstance(value, dict | list):
            yield from _strings(value, cid + "#")
        elif isinstance(value, str):
            yield cid, value


CONFIGS = sorted(glob.glob(os.path.join(REPO, "bundles", "*", "configs", "*.json")))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: "/".join(p.split(os.sep)[-3::2]))
def test_every_flag_reference_goes_through_as_bool(path):
    """Each use of a flag key (resume, deterministic, amp, cache_embeddings, ...) reads it as
    `sam2tune.utils.as_bool(@key, 'key')`: none passes the raw (maybe "false", truthy) string on."""
    flags = _flag_keys(os.path.dirname(os.path.dirname(path)))
    with open(path) as fh:
        config = json.load(fh)
    for cid, value in _strings(config):
        for key in flags:
            uses = len(re.findall(rf"@{key}(?![\w#])", value))
            parsed = value.count(f"sam2tune.utils.as_bool(@{key}, '{key}')")
            assert uses == parsed, f"{cid} reads @{key} without sam2tune.utils.as_bool: {value}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: "/".join(p.split(os.sep)[-3::2]))
def test_bundle_flag_override_false_is_false(path):
    """`monai.bundle run ... --amp false` hands the configs the string 'false' (fire keeps it a str)."""
    flags = _flag_keys(os.path.dirname(os.path.dirname(path)))
    with open(path) as fh:
        own = json.load(fh)
    config = own
    if os.path.basename(path) not in ("train.json", "inference.json", "metadata.json"):  # overrides of train.json
        config = ConfigParser.load_config_files([os.path.join(os.path.dirname(path), "train.json"), path])
    for cid, value in _strings(own):
        key = next((k for k in flags if value == f"$sam2tune.utils.as_bool(@{k}, '{k}')"), None)
        if key is None:
            continue
        for raw, expected in (("false", False), ("False", False), ("0", False), ("true", True), (False, False)):
            parser = ConfigParser(config)
            parser[key] = raw
            assert parser.get_parsed_content(cid) is expected, (cid, raw)


def test_one_boolean_parser():
    """sam2tune.utils.as_bool is the only one: no other module defines its own true/false parsing."""
    pattern = re.compile(r"def (as_flag|as_bool|parse_bool|str2bool|to_bool)\b|\.lower\(\) in \(['\"]true")
    found = []
    for path in glob.glob(os.path.join(REPO, "sam2tune", "**", "*.py"), recursive=True):
        with open(path) as fh:
            if pattern.search(fh.read()) and not path.endswith(os.path.join("utils", "flags.py")):
                found.append(os.path.relpath(path, REPO))
    for path in CONFIGS:
        with open(path) as fh:
            if "lower() in ('true'" in fh.read():
                found.append(os.path.relpath(path, REPO))
    assert found == []


def test_int_list_reads_the_tools_seed_lists():
    import argparse

    from sam2tune.utils.flags import int_list

    assert int_list("0, 1,2,") == [0, 1, 2] and int_list("") == []
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers expected, got '0,x'"):
        int_list("0,x")
