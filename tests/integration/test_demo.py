"""The README's demo (`scripts/local-up` runs `python -m devtools.demo`) shows what it promises:
the alerts, a "taken by <name>" closing update, a reminder, a Missed with its chatbot message, and
a test push answered by `livechat.push.test_result`. It starts its own broker, fakes and worker
process, and finishes by itself; exit code 1 names a step it did not see."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.contract.chart import REPO

pytestmark = [pytest.mark.slow]


def test_the_demo_shows_a_reminder_a_taken_by_update_and_a_test_push() -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFIER_")}
    finished = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--missed-after", "5", "--reminder-after", "2"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
        timeout=240,
        check=False,
    )
    output = finished.stdout
    assert finished.returncode == 0, output[-3000:] + finished.stderr[-3000:]
    assert "NOT SEEN" not in output
    lines = output.splitlines()

    def shown(*fragments: str) -> list[str]:
        return [line for line in lines if all(fragment in line for fragment in fragments)]

    # Kinds and names, not the core's wording (its texts are tested where they are built).
    assert len(shown("phone ", "[handoff_requested]")) == 6  # 3 phones x 2 chats; carla's (away) not
    assert "carla" not in "".join(shown("phone ", "[handoff_requested]"))
    taken = shown("phone ", "[handoff_closed]", "Anna Keller")
    assert len(taken) == 3  # anna's two phones and ben's are told who took chat-1001
    assert len(shown("phone ", "[handoff_reminder]")) == 3  # one reminder per device, chat-1002 only
    assert len(shown("phone ", "[handoff_closed]")) == 6  # taken (chat-1001) and missed (chat-1002)
    assert shown("chatbot", "to Bob", "bookings@alpine.example")
    assert shown("carla's Pixel [test_alert]")
    assert shown("livechat.push.test_result", '"request_id": "support-test-1"', '"outcome": "delivered"')
    assert shown("notifier_test_pushes_total", 'outcome="delivered"} 1.0')
