"""A real browser for the dashboard's tests: Debian's ``chromium`` (installed by the test set-up with apt when it
is missing) driven by Playwright's Python API, which uses that binary instead of downloading one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.registry_fixtures import apt_install


def _chromium() -> str | None:
    return shutil.which("chromium") or (apt_install("chromium") and shutil.which("chromium")) or None


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium for one test. Not shared wider: Playwright's sync API keeps an event loop running on
    the main thread while it is open, and ``asyncio.run`` in any later test would fail."""
    binary = _chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed and apt-get cannot install it here")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()
