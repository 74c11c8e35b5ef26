"""Default impact rules against the real agent: each rule's behaviour and its benign neighbour."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from rules_b_support import (
    actor_is,
    event_of,
    expect_alert,
    expect_quiet,
    marks,
    py,
    run,
    scratch_dir,
    stub_exe,
    token,
)

from conftest import AgentHandle

pytestmark = pytest.mark.kernel


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


def make_files(d: Path, n: int) -> list[Path]:
    files = [d / f"doc{i:03d}.txt" for i in range(n)]
    for f in files:
        f.write_text("quarterly report\n")
    return files


# -- se.impact.bulk_deletion_in_system_dirs -------------------------------------------

BULK_SYS = "se.impact.bulk_deletion_in_system_dirs"


@pytest.fixture
def var_lib_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=f"se-rb-{token()}-", dir="/var/lib"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_many_deletions_under_var_lib_alert(agent: AgentHandle, var_lib_dir: Path) -> None:
    make_files(var_lib_dir, 30)
    m = marks(agent)
    pid, _ = run(["rm", "-rf", str(var_lib_dir)])
    a = expect_alert(agent, BULK_SYS, m, actor_is(pid), ["T1485"])
    assert "/var/lib" in a["message"]


def test_few_deletions_under_var_lib_are_quiet(agent: AgentHandle, var_lib_dir: Path) -> None:
    make_files(var_lib_dir, 8)
    m = marks(agent)
    pid, _ = run(["rm", "-rf", str(var_lib_dir)])
    expect_quiet(agent, BULK_SYS, m, actor_is(pid), event_of(pid, "file"), settle=1.0)


# -- se.impact.ransomware_style_rename ------------------------------------------------

RANSOM = "se.impact.ransomware_style_rename"


def rename_all(d: Path, suffix: str) -> int:
    code = (f"import os\nfor n in sorted(os.listdir('{d}')):\n"
            f"    os.rename(os.path.join('{d}', n), os.path.join('{d}', n + '{suffix}'))\n")
    pid, _ = py(code)
    return pid


def test_renames_to_new_extension_alert(agent: AgentHandle, scratch: Path) -> None:
    make_files(scratch, 30)
    m = marks(agent)
    pid = rename_all(scratch, ".sealed")
    a = expect_alert(agent, RANSOM, m, actor_is(pid), ["T1486"])
    assert a["severity_id"] == 4


def test_numbered_rotation_renames_are_quiet(agent: AgentHandle, scratch: Path) -> None:
    make_files(scratch, 30)
    m = marks(agent)
    pid = rename_all(scratch, ".1")
    expect_quiet(agent, RANSOM, m, actor_is(pid), event_of(pid, "file"), settle=1.0)


# -- se.impact.disk_wipe_tool ---------------------------------------------------------

WIPE = "se.impact.disk_wipe_tool"


def test_wipefs_alerts(agent: AgentHandle, scratch: Path) -> None:
    img = scratch / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    m = marks(agent)
    # --no-act: wipefs only reports what it would erase, on a scratch image file
    pid, _ = run(["wipefs", "--no-act", str(img)], check=False)
    expect_alert(agent, WIPE, m, actor_is(pid), ["T1561.001", "T1485"])


def test_shred_of_a_temporary_file_is_quiet(agent: AgentHandle, scratch: Path) -> None:
    f = scratch / "old-secret.txt"
    f.write_text("obsolete\n")
    m = marks(agent)
    pid, _ = run(["shred", "-n", "1", "-u", str(f)])
    expect_quiet(agent, WIPE, m, actor_is(pid), event_of(pid, "exec"))


# -- se.impact.security_service_stopped -----------------------------------------------

STOP = "se.impact.security_service_stopped"


@pytest.fixture
def absent_falco_unit() -> None:
    """The tests name falco.service; never stop a real one on the host running them."""
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl not installed")
    res = subprocess.run(["systemctl", "cat", "falco.service"], capture_output=True, timeout=20)
    if res.returncode == 0:
        pytest.skip("a falco.service unit exists on this host; not stopping it")


@pytest.mark.usefixtures("absent_falco_unit")
def test_systemctl_stop_security_service_alerts(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["systemctl", "stop", "falco.service"], check=False)
    expect_alert(agent, STOP, m, actor_is(pid), ["T1489", "T1562.001"])


@pytest.mark.usefixtures("absent_falco_unit")
def test_systemctl_status_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["systemctl", "status", "falco.service"], check=False)
    expect_quiet(agent, STOP, m, actor_is(pid), event_of(pid, "exec"))


# -- se.impact.cryptominer_executed ---------------------------------------------------

MINER = "se.impact.cryptominer_executed"


def test_miner_with_stratum_url_alerts(agent: AgentHandle, scratch: Path) -> None:
    # xmrig is not packaged: a harmless program under its name, with a miner's arguments
    exe = stub_exe(scratch / "xmrig")
    m = marks(agent)
    pid, _ = run([str(exe), "-o", "stratum+tcp://127.0.0.1:3333", "-u", "wallet", "--donate-level=1"])
    expect_alert(agent, MINER, m, actor_is(pid), ["T1496"])


def test_grep_for_stratum_url_is_quiet(agent: AgentHandle) -> None:
    m = marks(agent)
    pid, _ = run(["grep", "-c", "stratum+tcp://127.0.0.1:3333", "/dev/null"], check=False)
    expect_quiet(agent, MINER, m, actor_is(pid), event_of(pid, "exec"))
