"""Enrichment: the stage between decode and output.

For every event it finds the calling process in the :class:`ProcessTable`
(keeping the table current with fork, exec, exit and comm events) and sets
``event.process`` (the caller's image; for an exec, the new one),
``event.parent`` (the parent image, see :mod:`.proctable` for which) and
``event.ancestry`` (parent first, up to ``ancestry_depth`` images). User and
group names, container id and runtime are on each :class:`ProcessInfo`.

Typical use::

    enricher = Enricher(host=host_info())
    enricher.seed()                      # every process already running
    for event in events:
        enricher.enrich(event)
"""

from __future__ import annotations

from sentinel_edge.enrich.containers import Container, container_from_cgroup, read_container
from sentinel_edge.enrich.host import boot_time_ns, host_info, read_boot_id
from sentinel_edge.enrich.proctable import ProcessTable, exec_id
from sentinel_edge.enrich.users import UserNames
from sentinel_edge.model import KIND_PTRACE, Event
from sentinel_edge.output.ocsf.common import HostInfo

#: event.data key of the ptrace target's ProcessInfo (None when unknown); rules.fields reads it
PTRACE_TARGET_KEY = "se_target"

__all__ = [
    "Container",
    "Enricher",
    "ProcessTable",
    "UserNames",
    "boot_time_ns",
    "container_from_cgroup",
    "exec_id",
    "host_info",
    "read_boot_id",
    "read_container",
]


class Enricher:
    """Adds process context to events; one instance per agent, not thread-safe."""

    def __init__(
        self,
        *,
        ancestry_depth: int = 8,
        exit_grace_s: float = 30.0,
        max_processes: int = 65536,
        host: HostInfo,
        proc_root: str = "/proc",
        users: UserNames | None = None,
    ) -> None:
        self.host = host
        self.users = users if users is not None else UserNames()
        self.table = ProcessTable(
            boot_id=host.boot_id,
            users=self.users,
            ancestry_depth=ancestry_depth,
            exit_grace_s=exit_grace_s,
            max_processes=max_processes,
            proc_root=proc_root,
        )

    def __len__(self) -> int:
        """Processes in the table (live and exited within their grace period)."""
        return len(self.table)

    def seed(self) -> int:
        """Add every process running now (from /proc) to the table; returns how many."""
        return self.table.seed()

    def enrich(self, event: Event) -> Event:
        """Update the table from ``event`` and set its process, parent and ancestry (in place)."""
        if not event.proc:
            return event  # synthesised events (loss, health) have no calling process
        table = self.table
        image = table.resolve(event)
        event.process = image.info
        parent = image.parent
        event.parent = None if parent is None else parent.info
        event.ancestry = table.ancestry_of(image)
        if event.kind == KIND_PTRACE:
            d = event.data
            # the target as the process table knows it (rules: ptrace.target_exe)
            d[PTRACE_TARGET_KEY] = table.lookup(d.get("target_pid", 0), d.get("target_start_ns", 0))
        return event
