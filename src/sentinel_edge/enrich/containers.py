"""Container id and runtime from a process's cgroup paths (``/proc/PID/cgroup``).

Each line of ``/proc/PID/cgroup`` is ``hierarchy-id:controllers:path``; cgroup
v2 has the single line ``0::path``, v1 one line per hierarchy, and hybrid
hosts both. On a hybrid host the v2 path (and so the v2 cgroup id the sensors
report) is often ``/`` for every container, because the runtime only places
processes in the v1 hierarchies: every line has to be looked at. The v2 line
is tried first, then the v1 lines in file order; the first that names a
container wins.

Path components recognised (``ID`` is 64 lowercase hex digits; the short id
shown by ``docker ps`` is its first 12, see :attr:`Container.short`):

=====================================  ============  =====================================
component                               runtime       seen with
=====================================  ============  =====================================
``docker-ID.scope``                     docker        systemd cgroup driver (v1 and v2)
``ID`` under a ``docker`` component     docker        cgroupfs driver: ``/docker/ID``
``cri-containerd-ID.scope``             containerd    Kubernetes + containerd, systemd driver
``crio-ID.scope`` / ``crio-ID``         cri-o         Kubernetes + CRI-O (systemd / cgroupfs)
``libpod-ID.scope`` / ``libpod-ID``     podman        podman (systemd / cgroupfs)
``nerdctl-ID.scope``                    containerd    nerdctl, systemd driver
``ID`` under a ``kubepods`` path        kubernetes    cgroupfs driver; CRI runtime not named
``ID`` anywhere else                    unknown       e.g. containerd namespaces ``/default/ID``
``lxc.payload.NAME`` / ``lxc/NAME``     lxc           LXC / LXD (id is the container name)
=====================================  ============  =====================================

``crio-conmon-ID`` and ``libpod-conmon-ID`` hold the container *monitor*
(conmon), a host process: they are not the container. When several
components match (a container nested in a container), the deepest one is the
container the process runs in.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_HEX64 = r"[0-9a-f]{64}"
_SCOPED = re.compile(
    rf"^(?P<kind>docker|cri-containerd|crio|libpod|nerdctl)-(?P<id>{_HEX64})(?:\.scope)?$"
)
_BARE = re.compile(rf"^{_HEX64}$")
_LXC_PAYLOAD = re.compile(r"^lxc\.payload\.(?P<name>.+)$")

_RUNTIME = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
    "nerdctl": "containerd",
}


class Container(NamedTuple):
    """A container a process runs in: the runtime's full id and the runtime's name."""

    id: str
    runtime: str

    @property
    def short(self) -> str:
        """The 12-character id runtimes display (``docker ps``); the full id for LXC names."""
        return self.id[:12] if _BARE.match(self.id) else self.id


def container_of_path(path: str) -> Container | None:
    """The container named by one cgroup path, or ``None``."""
    parts = [p for p in path.split("/") if p]
    found: Container | None = None
    for i, part in enumerate(parts):
        m = _SCOPED.match(part)
        if m is not None:
            found = Container(m.group("id"), _RUNTIME[m.group("kind")])
            continue
        if _BARE.match(part):
            above = parts[:i]
            if "docker" in above:
                runtime = "docker"
            elif any(p.startswith("kubepods") for p in above):
                runtime = "kubernetes"
            else:
                runtime = "unknown"
            found = Container(part, runtime)
            continue
        m = _LXC_PAYLOAD.match(part)
        if m is not None:
            found = Container(m.group("name"), "lxc")
            continue
        if i == 1 and parts[0] == "lxc":
            found = Container(part, "lxc")
    return found


def container_from_cgroup(content: str) -> Container | None:
    """The container named by the content of a ``/proc/PID/cgroup`` file, or ``None``.

    Malformed lines are skipped (the file is written by the kernel; a line
    without two colons can only come from a caller's mistake).
    """
    v2: list[str] = []
    v1: list[str] = []
    for line in content.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        (v2 if fields[0] == "0" and fields[1] == "" else v1).append(fields[2])
    for path in v2 + v1:
        found = container_of_path(path)
        if found is not None:
            return found
    return None


def read_container(pid: int, proc_root: str = "/proc") -> Container | None:
    """The container of a live process; ``None`` when none, or the process is gone."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return container_from_cgroup(raw.decode("utf-8", "backslashreplace"))
