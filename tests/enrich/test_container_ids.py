"""Container id and runtime from /proc/PID/cgroup, for each runtime, cgroup v1, v2 and hybrid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinel_edge.enrich.containers import (
    Container,
    container_from_cgroup,
    container_of_path,
    read_container,
)

ID_A = "3f4e9c2b1a0d8e7f6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615"
ID_B = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
POD = "pod5b4f7d1e-2c3a-4b5c-8d9e-0f1a2b3c4d5e"
POD_SYSTEMD = "pod5b4f7d1e_2c3a_4b5c_8d9e_0f1a2b3c4d5e"


def v1(path: str, *, systemd: str | None = None) -> str:
    """A cgroup v1 file as the kernel writes it, every controller at ``path``."""
    return "\n".join([
        f"12:pids:{path}",
        f"11:memory:{path}",
        f"10:cpu,cpuacct:{path}",
        f"9:blkio:{path}",
        f"8:devices:{path}",
        f"7:freezer:{path}",
        f"6:net_cls,net_prio:{path}",
        f"5:perf_event:{path}",
        f"4:cpuset:{path}",
        f"3:hugetlb:{path}",
        f"2:rdma:{path}",
        f"1:name=systemd:{systemd if systemd is not None else path}",
        "0::/",
        "",
    ])


def v2(path: str) -> str:
    return f"0::{path}\n"


CASES: list[tuple[str, str, Container | None]] = [
    # docker
    ("docker v1 cgroupfs", v1(f"/docker/{ID_A}"), Container(ID_A, "docker")),
    ("docker v1 systemd", v1(f"/system.slice/docker-{ID_A}.scope"), Container(ID_A, "docker")),
    ("docker v2 systemd", v2(f"/system.slice/docker-{ID_A}.scope"), Container(ID_A, "docker")),
    ("docker v2 cgroupfs", v2(f"/docker/{ID_A}"), Container(ID_A, "docker")),
    # hybrid host (like the test machine): v2 line is "/" for every container, v1 tells them apart
    ("docker hybrid", v1(f"/docker/{ID_B}", systemd=f"/docker/{ID_B}"), Container(ID_B, "docker")),
    # containerd under Kubernetes
    ("k8s containerd v2 systemd",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{POD_SYSTEMD}.slice/"
        f"cri-containerd-{ID_A}.scope"),
     Container(ID_A, "containerd")),
    ("k8s containerd v1 systemd",
     v1(f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD_SYSTEMD}.slice/"
        f"cri-containerd-{ID_A}.scope"),
     Container(ID_A, "containerd")),
    ("k8s v1 cgroupfs", v1(f"/kubepods/besteffort/{POD}/{ID_A}"), Container(ID_A, "kubernetes")),
    ("k8s v2 cgroupfs guaranteed", v2(f"/kubepods/{POD}/{ID_A}"), Container(ID_A, "kubernetes")),
    ("containerd namespace v2", v2(f"/default/{ID_A}"), Container(ID_A, "unknown")),
    ("nerdctl v2 systemd", v2(f"/system.slice/nerdctl-{ID_A}.scope"), Container(ID_A, "containerd")),
    # CRI-O
    ("crio v2 systemd",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{POD_SYSTEMD}.slice/"
        f"crio-{ID_A}.scope"),
     Container(ID_A, "cri-o")),
    ("crio v1 cgroupfs", v1(f"/kubepods/burstable/{POD}/crio-{ID_A}"), Container(ID_A, "cri-o")),
    ("crio conmon v2",
     v2(f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{POD_SYSTEMD}.slice/"
        f"crio-conmon-{ID_A}.scope"),
     None),
    ("crio conmon v1 cgroupfs", v1(f"/kubepods/burstable/{POD}/crio-conmon-{ID_A}"), None),
    # podman
    ("podman v2 systemd", v2(f"/machine.slice/libpod-{ID_A}.scope"), Container(ID_A, "podman")),
    ("podman v2 rootless split",
     v2(f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID_A}.scope/container"),
     Container(ID_A, "podman")),
    ("podman v1 cgroupfs", v1(f"/libpod_parent/libpod-{ID_A}"), Container(ID_A, "podman")),
    ("podman conmon v2", v2(f"/machine.slice/libpod-conmon-{ID_A}.scope"), None),
    ("podman conmon v1", v1(f"/machine.slice/libpod-conmon-{ID_A}.scope"), None),
    # nested: the deepest container is the one the process runs in
    ("docker in docker", v2(f"/docker/{ID_A}/docker/{ID_B}"), Container(ID_B, "docker")),
    # LXC
    ("lxc v2 payload", v2("/lxc.payload.web1/system.slice/nginx.service"), Container("web1", "lxc")),
    ("lxc v1 legacy", v1("/lxc/web1"), Container("web1", "lxc")),
    ("lxc monitor", v2("/lxc.monitor.web1"), None),
    # hosts
    ("host v2 user session", v2("/user.slice/user-0.slice/session-3.scope"), None),
    ("host init", v2("/init.scope"), None),
    ("host v1 root", v1("/"), None),
    # the test machine: a 32-hex name in the memory hierarchy is not a container id
    ("test machine", "4:memory:/process_api/94f7b4eb1587db5efab4e52a35a73afa\n0::/\n", None),
    ("docker service itself", v2("/system.slice/docker.service"), None),
    ("uppercase is not an id", v2(f"/docker/{ID_A.upper()}"), None),
    ("63 hex is not an id", v2(f"/docker/{ID_A[:63]}"), None),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_container_from_cgroup(content: str, expected: Container | None) -> None:
    assert container_from_cgroup(content) == expected


def test_v2_line_wins_over_v1_and_v1_is_searched_in_order() -> None:
    content = f"4:memory:/docker/{ID_B}\n0::/system.slice/docker-{ID_A}.scope\n"
    assert container_from_cgroup(content) == Container(ID_A, "docker")
    content = f"4:memory:/\n3:pids:/docker/{ID_B}\n1:name=systemd:/docker/{ID_A}\n0::/\n"
    assert container_from_cgroup(content) == Container(ID_B, "docker")


def test_malformed_lines_are_skipped() -> None:
    content = f"garbage\n\n:::\n0::/docker/{ID_A}\n"
    assert container_from_cgroup(content) == Container(ID_A, "docker")
    assert container_from_cgroup("") is None


def test_short_id_and_tuple_shape() -> None:
    c = container_of_path(f"/system.slice/docker-{ID_A}.scope")
    assert c is not None
    cid, runtime = c
    assert (cid, runtime) == (ID_A, "docker")
    assert len(cid) == 64
    assert c.short == ID_A[:12]
    assert Container("web1", "lxc").short == "web1"


def test_read_container_live_and_gone(tmp_path: Path) -> None:
    # this test process runs on the host (no container)
    assert read_container(os.getpid()) is None
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "cgroup").write_text(v1(f"/kubepods/besteffort/{POD}/crio-{ID_A}"))
    assert read_container(77, str(tmp_path)) == Container(ID_A, "cri-o")
    assert read_container(78, str(tmp_path)) is None  # gone
