"""The package's front door: its entry points resolve to the functions they name, lazily."""

from __future__ import annotations

import subprocess
import sys

import rice_lab


def test_every_entry_point_is_the_object_of_its_home_module():
    import importlib

    for name, module in rice_lab._ENTRY_POINTS.items():
        assert getattr(rice_lab, name) is getattr(importlib.import_module(module), name), name


def test_importing_rice_lab_does_not_import_fastai_or_torch():
    code = "import sys, rice_lab; print('fastai' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_an_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no_such_thing"):
        rice_lab.no_such_thing


def test_fine_tuning_names_stay_functions_once_their_modules_are_loaded():
    """A submodule named like a function would replace it on the package after its first import."""
    import rice_lab.finetune as finetune
    from rice_lab.finetune import predictions  # noqa: F401  (loads the module behind `predict`)

    for name in ("predict", "evaluate_run", "cached_finetune", "check_submission"):
        assert callable(getattr(finetune, name)) and not isinstance(getattr(finetune, name), type(finetune)), name
    assert callable(rice_lab.predict) and not isinstance(rice_lab.predict, type(finetune))


def test_the_constraints_pin_every_dependency_within_its_range():
    """constraints.txt (what make install uses) pins each requirement of the package and its extras to
    one version that the requirement's range allows: a pin outside it would make pip fail to resolve."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt pins no version of {requirement.name} (pyproject.toml: {text!r})"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt: {requirement.name}=={pins[name]} is outside pyproject.toml's {text!r}"
