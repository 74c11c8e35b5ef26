"""Start-up failures give errors that say what is missing and how to fix it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "sentinel_edge.cli"]


@pytest.mark.kernel
def test_non_root_start_is_refused_with_a_clear_message(tmp_path: object) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) missing")
    res = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *CLI, "run"],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert res.returncode == 2
    assert "must run as root" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.kernel
def test_missing_tracefs_is_mounted_or_explained() -> None:
    """In a private mount namespace without tracefs: refused with --no-mount, mounted otherwise."""
    script = (
        "for m in /sys/kernel/tracing /sys/kernel/debug/tracing; do "
        "  while mountpoint -q $m; do umount $m || exit 9; done; done; "
        f"{' '.join(CLI)} probe --no-mount; echo rc=$?; "
        f"{' '.join(CLI)} probe; echo rc=$?"
    )
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert "rc=2" in out[0]
    assert "tracefs is not mounted; mount it with 'mount -t tracefs tracefs /sys/kernel/tracing'" in res.stderr
    assert out[-1] == "rc=0"
    assert "tracefs /sys/kernel/tracing" in res.stdout
    # the outer namespace is untouched
    assert os.path.isdir("/sys/kernel/tracing/events")


@pytest.mark.kernel
def test_bad_config_exits_2_naming_the_key(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "c.yaml"
    cfg.write_text("sensors:\n  proces: false\n")
    res = subprocess.run([*CLI, "run", "-c", str(cfg)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{cfg}:2: unknown key 'sensors.proces'" in res.stderr
