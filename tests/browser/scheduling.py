"""One pytest-xdist worker runs every browser test, in file order: they share one demo (its
start is most of their time) and act on its runs in turn.

xdist's own way, `--dist loadgroup` with an xdist_group mark, appends the group to each test's
node id through `item._nodeid`, which pytest 9 no longer reads: the tests were scattered over
the workers, each starting a demo. This plugin (pyproject.toml's addopts: `-p
tests.browser.scheduling`) swaps `--dist load`'s scheduler for one that keeps tests/browser
together and hands out every other test on its own, as `load` does.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

BROWSER_TESTS = "tests/browser/"


class BrowserTestsTogether(LoadScopeScheduling):  # type: ignore[misc]
    """A unit of work per test, as `--dist load`, but one for all of tests/browser."""

    def _split_scope(self, nodeid: str) -> str:
        return BROWSER_TESTS if nodeid.startswith(BROWSER_TESTS) else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") == "load":
        return BrowserTestsTogether(config, log)
    return None
