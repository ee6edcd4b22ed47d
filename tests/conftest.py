"""Fixtures of the whole test suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))  # dicom_helpers, imported by name


@pytest.fixture(scope="session", autouse=True)
def _user_config_in_tmp(tmp_path_factory):
    """A batch run without a pseudonymisation key generates the user's key in the user's
    configuration folder (``docs/batch.md``, "Pseudonymisation"): in tests that folder is a
    temporary one, never the real ``~/.config``. Session scope, so that module-scoped
    fixtures running a batch are covered too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("user_config")))
        yield
