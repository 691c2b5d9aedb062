"""Fan-out reports on their way back into their partition's next step.

The fan-out reports from its own tasks, between turns; the reports wait here until the consumer
loop steps their partition (which writes them to the changelog in its transaction). A token the
provider rejected is marked dead in the agent directory at once, so no push decided meanwhile
uses it; the round's own record of it follows with the step.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from service.domain.directory import AgentDirectory
from service.domain.reports import DeviceRejected, FanOutReport


class FanOutInbox:
    """Holds fan-out reports per partition until that partition's next step takes them."""

    def __init__(self, agents: AgentDirectory, owns: Callable[[int], bool]) -> None:
        """`owns(partition)`: whether this worker owns the partition now; reports of a partition
        released since are dropped (its new owner resumes the round from the changelog)."""
        self._agents = agents
        self._owns = owns
        self._reports: defaultdict[int, list[FanOutReport]] = defaultdict(list)

    def receive(self, report: FanOutReport) -> None:
        if isinstance(report, DeviceRejected):
            rejection = report.rejection
            self._agents.mark_token_dead(rejection.agent_id, rejection.device_id, report.token)
        if self._owns(report.partition):
            self._reports[report.partition].append(report)

    def take(self, partition: int) -> list[FanOutReport]:
        """The partition's reports so far, in arrival order; they are the caller's from now on."""
        return self._reports.pop(partition, [])
