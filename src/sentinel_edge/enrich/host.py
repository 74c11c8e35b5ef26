"""Identity of the host the agent runs on.

``boot_time_ns`` converts kernel timestamps to wall-clock time: the sensors
stamp events with ``bpf_ktime_get_boot_ns()`` (CLOCK_BOOTTIME, suspend
included), so ``boot_time_ns + event.ts_ns`` is epoch nanoseconds. It is
computed from the two clocks read back to back; the pair is read a few times
and the tightest pair kept so a preemption between the reads does not skew it.
A later wall-clock step (NTP, settimeofday) is not followed: call
:func:`host_info` again to pick it up.
"""

from __future__ import annotations

import socket
import time

from sentinel_edge.errors import KernelFeatureError
from sentinel_edge.output.ocsf.common import HostInfo

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """The random UUID the kernel draws at every boot."""
    try:
        with open(path, encoding="ascii") as f:
            boot_id = f.read().strip()
    except OSError as exc:
        raise KernelFeatureError(f"cannot read the boot id from {path}: {exc.strerror}") from exc
    if not boot_id:
        raise KernelFeatureError(f"{path} is empty")
    return boot_id


def boot_time_ns(samples: int = 5) -> int:
    """Wall-clock ns at boot: ``time_ns() - CLOCK_BOOTTIME`` from the tightest of ``samples`` reads."""
    best: tuple[int, int] | None = None  # (read window ns, boot time ns)
    for _ in range(max(1, samples)):
        b0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        wall = time.time_ns()
        b1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        window = b1 - b0
        estimate = wall - (b0 + window // 2)
        if best is None or window < best[0]:
            best = (window, estimate)
    assert best is not None
    return best[1]


def host_info() -> HostInfo:
    """Hostname, boot id and boot wall-clock time of this machine."""
    return HostInfo(hostname=socket.gethostname(), boot_id=read_boot_id(), boot_time_ns=boot_time_ns())
