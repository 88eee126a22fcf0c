"""`--resume false` and `--deterministic false`, as the bundle CLI hands them over (strings),
mean false in every bundle.

`python -m monai.bundle run training ... --resume false` passes the string "false" (fire only turns `False` into a
bool), and "false" is truthy. Each bundle's train.json is parsed with MONAI's ConfigParser and the override, then:
the resolved checkpoint handler (train#checkpoint) must not resume, and the "initialize" expressions must ask torch for
no deterministic algorithms. The real run that proves "false" does not resume from an existing checkpoint is
tests/bundles/test_optic_cup_fundus_sam2.py::test_resume_string_false_does_not_resume.
"""

from __future__ import annotations

import os

import monai
import pytest
import torch
from monai.bundle import ConfigParser

from sam2tune.handlers import ResumableCheckpoint

BUNDLES = [
    "abdomen_ct_sam2",
    "knee_cartilage_mri_sam2",
    "lung_nodule_ct_sam2",
    "optic_cup_fundus_sam2",
    "steel_defect_sam2",
]
UNITS = {"steel_defect_sam2": "step"}  # the others checkpoint every epoch


def _parser(bundle_tools, bundle: str, **override) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(bundle_tools.config_path(bundle, "train"))
    for key, value in override.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(("given", "expected"), [("false", False), ("False", False), ("0", False), ("true", True)])
def test_resume_string_reaches_the_checkpoint_handler_parsed(bundle, given, expected, bundle_tools, tmp_path):
    # save_dict / validator need the network and data: the flag's path to the handler does not
    parser = _parser(bundle_tools, bundle, resume=given, ckpt_dir=str(tmp_path), **{"train#checkpoint#save_dict": {},
                                                                                    "train#checkpoint#validator": None})
    handler = parser.get_parsed_content("train#checkpoint")
    assert isinstance(handler, ResumableCheckpoint) and handler.resume is expected
    assert handler.unit == UNITS.get(bundle, "epoch")
    # and it is the handler the trainer gets
    assert parser["train"]["handlers"][-1].replace("::", "#") == "@train#checkpoint", (
        "attached last (see its docstring)"
    )


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(("given", "expected"), [("false", False), ("False", False), (False, False), ("true", True)])
def test_deterministic_string_reaches_torch_parsed(bundle, given, expected, bundle_tools, monkeypatch):
    calls: list[tuple[str, object]] = []

    def set_determinism(seed=None, use_deterministic_algorithms=None, **kw):
        calls.append(("set_determinism", use_deterministic_algorithms))

    monkeypatch.setattr(monai.utils, "set_determinism", set_determinism)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode, **kw: calls.append(("torch", mode)))
    env: dict[str, str] = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    monkeypatch.setattr(os, "environ", env)
    _parser(bundle_tools, bundle, deterministic=given).get_parsed_content("initialize")
    asked = [bool(mode) for _, mode in calls if mode is not None]  # None: set_determinism leaves the mode alone
    assert calls and all(mode is expected for mode in asked), calls
    if expected:
        assert asked, calls
    else:
        assert "CUBLAS_WORKSPACE_CONFIG" not in env


def test_bad_flag_value_names_the_key(bundle_tools, tmp_path):
    parser = _parser(bundle_tools, "optic_cup_fundus_sam2", resume="flase", ckpt_dir=str(tmp_path),
                     **{"train#checkpoint#save_dict": {}, "train#checkpoint#validator": None})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("train#checkpoint")
    assert "resume must be true or false" in bundle_tools.error_chain(err.value)
