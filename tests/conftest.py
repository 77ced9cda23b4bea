"""Shared fixtures: offline rules, the shared real-data folder, a fake clock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

from tenmon import offline  # noqa: E402
from tenmon.clock import FakeClock  # noqa: E402

offline.configure()

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real observatory data; see its SOURCES.md)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: CI clones main with shared/ beside it")
    return SHARED_DATA


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
