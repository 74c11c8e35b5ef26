"""Quarantine of real files: same filesystem and across filesystems, hostile names, refusals, restore."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.enforce.identity import identity_of_path
from sentinel_edge.enforce.quarantine import ActionRefused, Quarantine, QuarantineRecord
from sentinel_edge.errors import EnforceError

pytestmark = pytest.mark.kernel

QID_RE = re.compile(r"[0-9a-f]{16}-[0-9a-f]{12}")
CONTENT = b"#!/bin/sh\necho payload\n" + bytes(range(256)) * 64
ATIME_NS = 1_600_000_000_123_456_789
MTIME_NS = 1_650_000_000_987_654_321


def make_file(path: bytes | Path, content: bytes = CONTENT, *, uid: int = 1234, gid: int = 2345,
              mode: int = 0o4750) -> None:
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)               # after chown: chown clears set-id bits
    os.setxattr(path, b"user.sentinel.test", b"tag\x00value")
    os.utime(path, ns=(ATIME_NS, MTIME_NS))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "se-q-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def check_quarantined(q: Quarantine, rec: QuarantineRecord, content: bytes) -> None:
    d = os.stat(q.directory, follow_symlinks=False)
    assert stat.S_ISDIR(d.st_mode)
    assert stat.S_IMODE(d.st_mode) == 0o700
    assert (d.st_uid, d.st_gid) == (0, 0)
    st = os.stat(q.data_path(rec.qid), follow_symlinks=False)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert st.st_size == len(content)
    assert q.data_path(rec.qid).read_bytes() == content       # root reads through mode 0000
    obj = json.loads((q.directory / f"{rec.qid}.json").read_text(encoding="ascii"))
    assert obj == rec.to_json()
    assert QuarantineRecord.from_json(obj) == rec
    assert q.get(rec.qid) == rec
    assert sorted(os.listdir(q.directory)) == sorted([f"{rec.qid}.data", f"{rec.qid}.json"])


def check_restored(path: bytes | Path, content: bytes, *, uid: int = 1234, gid: int = 2345,
                   mode: int = 0o4750) -> None:
    st = os.stat(path, follow_symlinks=False)
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert st.st_mtime_ns == MTIME_NS
    assert st.st_atime_ns == ATIME_NS
    with open(path, "rb") as f:
        assert f.read() == content
    assert os.getxattr(path, b"user.sentinel.test") == b"tag\x00value"


def test_quarantine_and_restore_same_filesystem(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "var" / "quarantine")
    victim = tmp_path / "dropper.sh"
    make_file(victim)
    ident = identity_of_path(victim)
    before = time.time_ns()
    rec = q.quarantine(str(victim), rule_id="se.test.rule", alert_id="alert-1")
    after = time.time_ns()

    assert QID_RE.fullmatch(rec.qid)
    assert rec.path == os.fsencode(victim)
    assert rec.path_text == str(victim)
    assert rec.mode == 0o4750
    assert (rec.uid, rec.gid) == (1234, 2345)
    assert (rec.atime_ns, rec.mtime_ns) == (ATIME_NS, MTIME_NS)   # the hash read did not touch atime
    assert rec.size == len(CONTENT)
    assert rec.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert before <= rec.quarantined_ns <= after
    assert (rec.rule_id, rec.alert_id) == ("se.test.rule", "alert-1")
    assert (rec.dev, rec.ino) == (ident.dev, ident.ino)
    assert rec.nlink == 1
    assert rec.moved == "rename"
    assert rec.xattrs == {b"user.sentinel.test": b"tag\x00value"}
    assert not os.path.lexists(victim)
    check_quarantined(q, rec, CONTENT)
    obj = json.loads((q.directory / f"{rec.qid}.json").read_text())
    assert obj == {
        "version": 1, "qid": rec.qid, "path": str(victim), "mode": 0o4750, "uid": 1234, "gid": 2345,
        "atime_ns": ATIME_NS, "mtime_ns": MTIME_NS, "size": len(CONTENT),
        "sha256": hashlib.sha256(CONTENT).hexdigest(), "quarantined_ns": rec.quarantined_ns,
        "rule_id": "se.test.rule", "alert_id": "alert-1", "dev": ident.dev, "ino": ident.ino, "nlink": 1,
        "moved": "rename", "xattrs": {"user.sentinel.test": "dGFnAHZhbHVl"},
    }
    assert q.list() == [rec]

    back = q.restore(rec.qid)
    assert back == rec
    check_restored(victim, CONTENT)
    assert os.stat(victim).st_ino == ident.ino                      # the same inode came back
    assert q.list() == []
    assert os.listdir(q.directory) == []
    with pytest.raises(EnforceError, match=f"no quarantined file '{rec.qid}'"):
        q.restore(rec.qid)


def test_quarantine_across_filesystems_and_back(tmp_path: Path, tmpfs: Path) -> None:
    q = Quarantine(tmp_path / "quarantine")              # on the root filesystem
    victim = tmpfs / "implant"                           # on the tmpfs
    make_file(victim, mode=0o755)
    ident = identity_of_path(victim)
    rec = q.quarantine(victim, rule_id="r", alert_id="a")
    assert rec.moved == "copy"
    assert (rec.dev, rec.ino) == (ident.dev, ident.ino)
    assert rec.mode == 0o755
    assert (rec.uid, rec.gid, rec.atime_ns, rec.mtime_ns) == (1234, 2345, ATIME_NS, MTIME_NS)
    assert rec.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert rec.size == len(CONTENT)
    assert rec.xattrs == {b"user.sentinel.test": b"tag\x00value"}
    assert os.listdir(tmpfs) == []                       # original gone, nothing left aside
    check_quarantined(q, rec, CONTENT)

    q.restore(rec.qid)                                   # copied back onto the tmpfs
    check_restored(victim, CONTENT, mode=0o755)
    assert os.listdir(tmpfs) == ["implant"]
    assert os.listdir(q.directory) == []


def test_quarantine_dir_on_tmpfs_restore_to_other_path(tmp_path: Path, tmpfs: Path) -> None:
    q = Quarantine(tmpfs / "q")
    victim = tmp_path / "a.bin"
    make_file(victim, mode=0o640)
    rec = q.quarantine(victim)
    assert rec.moved == "copy"
    assert (rec.rule_id, rec.alert_id) == ("", "")
    check_quarantined(q, rec, CONTENT)
    elsewhere = tmp_path / "restored.bin"
    assert q.restore(rec.qid, str(elsewhere)) == rec
    check_restored(elsewhere, CONTENT, mode=0o640)
    assert not victim.exists()


def test_copy_failure_keeps_the_original(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "se-q-small", str(small)], check=True)
    try:
        q = Quarantine(small / "q")
        victim = tmp_path / "big.bin"
        big = os.urandom(256 * 1024)
        make_file(victim, big, mode=0o600)
        with pytest.raises(EnforceError, match=r"quarantine .*big\.bin: No space left on device"):
            q.quarantine(victim)
        check_restored(victim, big, mode=0o600)           # untouched: content, mode, owner, times, xattr
        assert os.listdir(small / "q") == []              # no partial copy, no record
        assert q.list() == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_hostile_names(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    base = os.fsencode(tmp_path)
    name = base + b"/evil\nname\xff\xfe\\x41 .sh"
    make_file(name, b"x", mode=0o700)
    rec = q.quarantine(name, rule_id="r\nid")
    assert rec.path == name
    assert rec.path_text == os.fsdecode(base) + "/evil\nname\\xff\\xfe\\\\x41 .sh"
    raw_json = (q.directory / f"{rec.qid}.json").read_bytes()
    assert raw_json.isascii()
    assert QuarantineRecord.from_json(json.loads(raw_json)).path == name
    assert q.list() == [rec]
    q.restore(rec.qid)
    check_restored(name, b"x", mode=0o700)


def test_path_longer_than_path_max(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    comp = b"d" * 200
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    path = os.fsencode(tmp_path) + b"/deep"
    os.mkdir(b"deep", dir_fd=fd)
    cur = os.open(b"deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    try:
        while len(path) < 4600:
            os.mkdir(comp, dir_fd=cur)
            nxt = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=cur)
            os.close(cur)
            cur = nxt
            path += b"/" + comp
        leaf = b"payload\n\xff"
        ffd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o751, dir_fd=cur)
        os.write(ffd, b"deep content")
        os.close(ffd)
        full = path + b"/" + leaf
        assert len(full) > 4096
        with pytest.raises(OSError):           # too long for any single syscall
            os.stat(full)
        rec = q.quarantine(full)
        assert rec.path == full
        assert rec.size == 12
        assert rec.mode == 0o751
        assert os.listdir(cur) == []
        q.restore(rec.qid)
        assert os.listdir(cur) == [leaf.decode("utf-8", "surrogateescape")]
        st = os.stat(leaf, dir_fd=cur)
        assert stat.S_IMODE(st.st_mode) == 0o751
        rfd = os.open(leaf, os.O_RDONLY, dir_fd=cur)
        assert os.read(rfd, 100) == b"deep content"
        os.close(rfd)
    finally:
        os.close(cur)
        shutil.rmtree(tmp_path / "deep")


def test_refusals_leave_the_file(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    target = tmp_path / "target"
    make_file(target, mode=0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ActionRefused, match=r"link: is a symbolic link, not the file"):
        q.quarantine(link)
    assert link.is_symlink()
    with pytest.raises(ActionRefused, match=r"not a regular file"):
        q.quarantine(tmp_path / "q")
    ident = identity_of_path(target)
    with pytest.raises(ActionRefused, match=rf"target: the file there now \(dev {ident.dev}, inode {ident.ino}\) "
                                            rf"is not the one of the event \(dev {ident.dev}, inode 1\): refused"):
        q.quarantine(target, expect=(ident.dev, 1))
    with pytest.raises(ActionRefused, match=r"target: the file is protected"):
        q.quarantine(target, protected={(ident.dev, ident.ino)})
    with pytest.raises(EnforceError, match=r"missing: No such file or directory") as ei:
        q.quarantine(tmp_path / "missing")
    assert not isinstance(ei.value, ActionRefused)
    with pytest.raises(EnforceError, match=r"quarantine: relative is not an absolute path"):
        q.quarantine(b"relative")
    check_restored(target, CONTENT, mode=0o644)
    assert q.list() == []
    assert os.listdir(q.directory) == []
    # a matching expectation is accepted
    rec = q.quarantine(target, expect=(ident.dev, ident.ino))
    assert rec.ino == ident.ino
    # a file already in quarantine is not quarantined again
    with pytest.raises(ActionRefused, match="already in the quarantine directory"):
        q.quarantine(q.data_path(rec.qid))


def test_restore_never_replaces_and_hard_links_are_recorded(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q")
    victim = tmp_path / "v"
    make_file(victim, mode=0o600)
    os.link(victim, tmp_path / "other-name")
    rec = q.quarantine(victim)
    assert rec.nlink == 2
    victim.write_bytes(b"a new file took the name")
    with pytest.raises(EnforceError, match=rf"restore {rec.qid} to .*/v: a file with that name exists"):
        q.restore(rec.qid)
    assert victim.read_bytes() == b"a new file took the name"
    assert q.list() == [rec]
    check_quarantined(q, rec, CONTENT)
    with pytest.raises(EnforceError, match=re.escape("'../x' is not a quarantine id")):
        q.restore("../x")
    with pytest.raises(EnforceError, match="no quarantined file 'nope'"):
        q.get("nope")


def test_directory_owned_by_someone_else_refused(tmp_path: Path) -> None:
    d = tmp_path / "q"
    d.mkdir(mode=0o755)
    os.chown(d, 1234, 1234)
    victim = tmp_path / "v"
    make_file(victim, mode=0o600)
    with pytest.raises(EnforceError, match=r"quarantine directory .*/q is owned by uid 1234, not root: refused"):
        Quarantine(d).quarantine(victim)
    assert victim.exists()
    # a root-owned directory with a loose mode is tightened
    os.chown(d, 0, 0)
    rec = Quarantine(d).quarantine(victim)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    check_quarantined(Quarantine(d), rec, CONTENT)


def test_name_swapped_during_a_move_is_put_back(tmp_path: Path, tmpfs: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another file renamed over the name between our open and our rename (same filesystem) or our
    unlink (across filesystems): nothing is lost, the swapped-in file stays at the name."""
    import sentinel_edge.enforce.quarantine as qmod

    real_hash, real_copy = qmod._hash_fd, qmod._copy_fd

    for where, patch_name, real in ((tmp_path, "_hash_fd", real_hash), (tmpfs, "_copy_fd", real_copy)):
        victim = where / "victim"
        make_file(victim, b"original", mode=0o600)
        other = where / "other"
        other.write_bytes(b"swapped in")

        def swap(*args: int, _real: Any = real, _victim: Path = victim, _other: Path = other) -> Any:
            out = _real(*args)
            os.rename(_other, _victim)           # the race: the name now holds another inode
            return out

        monkeypatch.setattr(qmod, patch_name, swap)
        q = Quarantine(tmp_path / "q")
        kind = "moved" if patch_name == "_hash_fd" else "copied"
        with pytest.raises(EnforceError, match=rf"victim: the file was replaced while being {kind}: refused"):
            q.quarantine(victim)
        monkeypatch.setattr(qmod, patch_name, real)
        assert victim.read_bytes() == b"swapped in"
        assert q.list() == []
        assert os.listdir(q.directory) == []
        assert not other.exists()
        assert [n for n in os.listdir(where) if n.startswith(".")] == []     # nothing left renamed aside
