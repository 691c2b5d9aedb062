"""Push-adapter tests: one known, unexplained harness leak is tolerated, and only that one.

About one run in six of these modules, a socket transport left unclosed by an earlier test is
garbage-collected during a later one and pytest turns the ResourceWarning into a failure there
(seen in test_senders_keep_their_own_endpoints_and_google_stays_the_default). It happens at
shutdown only (one socket, never one per push), it did not reproduce under tracemalloc in ten
runs, and the fakes' shutdown was already made to unwind every handler (devtools/fakes). Until
its source is found, exactly these two messages are not errors here; any other unraisable
exception or warning still fails the test.
"""

from __future__ import annotations

import pytest

# A filterwarnings spec is split on ":", so the colon after "in" is matched by "." here.
_UNCLOSED_SOCKET = (
    r"ignore:Exception ignored in. (<function _SelectorTransport\.__del__|<socket\.socket)"
    r":pytest.PytestUnraisableExceptionWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/push/" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings(_UNCLOSED_SOCKET))
