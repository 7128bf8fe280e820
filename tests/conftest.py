"""Shared fixtures: the ../shared/data samples, devices and dtypes, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder {SHARED_DATA} not found (it sits beside the checkout)")
    return SHARED_DATA


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the rest of a module (``pytestmark =
    pytest.mark.usefixtures("one_torch_thread")``): tests of many tiny ops on a shared 2-core
    machine, where a second intra-op thread mostly waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
