"""Host identity and the boot-time clock conversion."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from sentinel_edge.enrich.host import boot_time_ns, host_info, read_boot_id
from sentinel_edge.errors import KernelFeatureError


def test_host_info_of_this_machine() -> None:
    host = host_info()
    assert host.hostname == socket.gethostname()
    assert host.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", host.boot_id)


def test_boot_time_converts_boottime_to_epoch() -> None:
    boot = boot_time_ns()
    # what the sensors stamp (bpf_ktime_get_boot_ns) is CLOCK_BOOTTIME
    now_epoch = time.time_ns()
    now_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert abs(boot + now_boot - now_epoch) < 1_000_000  # 1 ms
    # and agrees with the kernel's own boot time (whole seconds) in /proc/stat
    btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime "))
    assert abs(boot / 1e9 - btime) <= 1.5


def test_missing_or_empty_boot_id_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KernelFeatureError, match=r"cannot read the boot id from .*/nope"):
        read_boot_id(str(tmp_path / "nope"))
    empty = tmp_path / "boot_id"
    empty.write_text("\n")
    with pytest.raises(KernelFeatureError, match="is empty"):
        read_boot_id(str(empty))
