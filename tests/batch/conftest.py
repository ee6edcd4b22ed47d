"""Fixtures of the batch tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("SPINE_MEASURE_PSEUDONYM_KEY", "test-key")
