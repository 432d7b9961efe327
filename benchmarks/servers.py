"""The servers the benchmarks start: the test suite's ``LiveServer`` (a real
`genarm serve` process on a free port) and its tiny-model helpers in conftest.

Importing this module puts tests/ on ``sys.path`` (once), so that ``live_server``
and ``conftest`` import by module name as they do in the tests; benchmarks that
start servers import ``LiveServer`` from here rather than each doing that.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from live_server import LiveServer  # noqa: E402

__all__ = ["REPO", "TESTS", "LiveServer"]
