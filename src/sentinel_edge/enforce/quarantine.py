"""Quarantine: move a file out of reach, keep what is needed to put it back.

    quarantine(path)  ->  <dir>/<qid>.data   the file itself, mode 0000, in a root-only (0700) directory
                          <dir>/<qid>.json   its metadata: original path, mode, owner, times, size,
                                             sha256, xattrs, quarantine time, rule and alert ids
    restore(qid)      ->  the file back at its path (or another), with mode, owner, times and xattrs
    list()            ->  every record whose file is still in quarantine

Paths are bytes end to end (a name may hold a newline or bytes that are not
UTF-8); the JSON keeps them as lossless text (``output.ocsf.common.text``:
``\\xNN`` for bytes that are not UTF-8, ``\\\\`` for a backslash) and
:func:`~sentinel_edge.output.ocsf.common.untext` gives the exact bytes back.
Paths longer than PATH_MAX are walked one component at a time from ``/``
with directory fds, so no syscall ever gets more than one name.

Never losing the file: on the same filesystem the file is renamed (one atomic
step; the metadata is written and synced first). Across filesystems it is
copied to a temporary name in the quarantine directory, synced, renamed to its
final name, the metadata written and synced, and only then the original name
is renamed aside in its own directory, checked to still be the inode that was
copied, and unlinked (a name swapped in meanwhile is renamed back, and the
copy removed). A failure at any step leaves the original in place.

What quarantine does not do: other hard links to the file (``nlink`` > 1 in
the record) still reach its content, and a process that already has it open
keeps reading or writing it (a running executable keeps running: kill it).
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel_edge.enforce.identity import identity_of_fd
from sentinel_edge.errors import EnforceError
from sentinel_edge.output.ocsf.common import text, untext

DEFAULT_QUARANTINE_DIR = Path("/var/lib/sentinel-edge/quarantine")
RECORD_VERSION = 1
_CHUNK = 1 << 20
_RENAME_NOREPLACE = 1
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_OPEN_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)


class ActionRefused(EnforceError):
    """A response action was not attempted: a safety check said no (the message says which)."""


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """What was quarantined and how to put it back (the ``<qid>.json`` file)."""

    qid: str
    path: bytes                     # original absolute path, exact bytes
    mode: int                       # permission bits (S_IMODE: with setuid/setgid/sticky)
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    size: int                       # bytes moved or copied
    sha256: str                     # of the content as it was moved or copied
    quarantined_ns: int             # wall-clock ns
    rule_id: str = ""
    alert_id: str = ""
    dev: int = 0                    # superblock device (new_encode_dev) of the original
    ino: int = 0
    nlink: int = 1                  # links it had: more than 1 means other names still reach it
    moved: str = "rename"           # rename (same filesystem) | copy (another filesystem)
    xattrs: dict[bytes, bytes] = field(default_factory=dict)   # every extended attribute readable

    @property
    def path_text(self) -> str:
        return text(self.path) or ""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECORD_VERSION, "qid": self.qid, "path": self.path_text, "mode": self.mode,
            "uid": self.uid, "gid": self.gid, "atime_ns": self.atime_ns, "mtime_ns": self.mtime_ns,
            "size": self.size, "sha256": self.sha256, "quarantined_ns": self.quarantined_ns,
            "rule_id": self.rule_id, "alert_id": self.alert_id, "dev": self.dev, "ino": self.ino,
            "nlink": self.nlink, "moved": self.moved,
            "xattrs": {text(k): base64.b64encode(v).decode("ascii") for k, v in sorted(self.xattrs.items())},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> QuarantineRecord:
        try:
            return cls(
                qid=str(obj["qid"]), path=untext(obj["path"]), mode=int(obj["mode"]), uid=int(obj["uid"]),
                gid=int(obj["gid"]), atime_ns=int(obj["atime_ns"]), mtime_ns=int(obj["mtime_ns"]),
                size=int(obj["size"]), sha256=str(obj["sha256"]), quarantined_ns=int(obj["quarantined_ns"]),
                rule_id=str(obj.get("rule_id", "")), alert_id=str(obj.get("alert_id", "")),
                dev=int(obj.get("dev", 0)), ino=int(obj.get("ino", 0)), nlink=int(obj.get("nlink", 1)),
                moved=str(obj.get("moved", "rename")),
                xattrs={untext(k): base64.b64decode(v) for k, v in dict(obj.get("xattrs", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EnforceError(f"quarantine record is invalid: {exc!r}") from exc


def _valid_qid(qid: str) -> bool:
    return bool(qid) and len(qid) <= 64 and all(c.isascii() and (c.isalnum() or c == "-") for c in qid)


def _renameat2(olddir: int, old: bytes, newdir: int, new: bytes) -> None:
    """rename without replacing an existing name (RENAME_NOREPLACE; link+unlink where unsupported)."""
    if _libc.renameat2(olddir, old, newdir, new, _RENAME_NOREPLACE) == 0:
        return
    err = ctypes.get_errno()
    if err not in (errno.EINVAL, errno.ENOSYS):
        raise OSError(err, os.strerror(err))
    os.link(old, new, src_dir_fd=olddir, dst_dir_fd=newdir, follow_symlinks=False)
    os.unlink(old, dir_fd=olddir)


def _split(path: bytes) -> tuple[list[bytes], bytes]:
    if not path.startswith(b"/"):
        raise EnforceError(f"quarantine: {text(path)} is not an absolute path")
    parts = [p for p in path.split(b"/") if p]
    if not parts or parts[-1] in (b".", b".."):
        raise EnforceError(f"quarantine: {text(path)} does not name a file")
    return parts[:-1], parts[-1]


@contextmanager
def _parent(path: bytes) -> Iterator[tuple[int, bytes]]:
    """(fd of the directory holding ``path``, last name), walked a component at a time (any length)."""
    dirs, name = _split(path)
    fd = os.open("/", _OPEN_DIR)
    try:
        for comp in dirs:
            nfd = os.open(comp, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
        yield fd, name
    finally:
        os.close(fd)


def _fsync_dir(dirfd: int) -> None:
    """fsync a directory given by an O_PATH fd (fsync needs a real open)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_nofollow(name: bytes, dirfd: int) -> int:
    try:
        return os.open(name, _OPEN_FILE | os.O_NOATIME, dir_fd=dirfd)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(name, _OPEN_FILE, dir_fd=dirfd)


def _xattrs(fd: int) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    try:
        names = os.listxattr(fd)
    except OSError:
        return out
    for n in names:
        with suppress(OSError):
            out[os.fsencode(n)] = os.getxattr(fd, n)
    return out


def _hash_fd(fd: int) -> tuple[str, int]:
    h = hashlib.sha256()
    off = 0
    while True:
        chunk = os.pread(fd, _CHUNK, off)
        if not chunk:
            return h.hexdigest(), off
        h.update(chunk)
        off += len(chunk)


def _copy_fd(src: int, dst: int) -> tuple[str, int]:
    """Copy src (from offset 0) to dst; the sha256 and size of what was copied."""
    h = hashlib.sha256()
    off = 0
    while True:
        chunk = os.pread(src, _CHUNK, off)
        if not chunk:
            return h.hexdigest(), off
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.write(dst, view)
            view = view[n:]
        off += len(chunk)


def _same_inode(st: os.stat_result, name: bytes, dirfd: int) -> bool:
    try:
        now = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class Quarantine:
    """A quarantine directory (root-only, 0700) and the files in it.

    Every method raises :class:`EnforceError` naming the path or qid when it
    cannot do its work; the file is then where it was.
    """

    def __init__(self, directory: str | Path = DEFAULT_QUARANTINE_DIR) -> None:
        self.directory = Path(directory)

    # ------------------------------------------------------------ the directory

    @contextmanager
    def _dir(self) -> Iterator[int]:
        """The quarantine directory, created root-only if missing, refused if someone else owns it."""
        d = self.directory
        try:
            d.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with suppress(FileExistsError):
                os.mkdir(d, 0o700)
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise EnforceError(f"quarantine directory {d}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if st.st_uid != 0:
                raise EnforceError(f"quarantine directory {d} is owned by uid {st.st_uid}, not root: refused")
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.fchmod(fd, 0o700)
            yield fd
        finally:
            os.close(fd)

    def _write_record(self, qfd: int, rec: QuarantineRecord) -> None:
        tmp = f".{rec.qid}.json.tmp"
        data = json.dumps(rec.to_json(), indent=1, sort_keys=True, ensure_ascii=True).encode() + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=qfd)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, f"{rec.qid}.json", src_dir_fd=qfd, dst_dir_fd=qfd)
        os.fsync(qfd)

    @staticmethod
    def _remove(qfd: int, *names: str) -> None:
        for n in names:
            with suppress(FileNotFoundError):
                os.unlink(n, dir_fd=qfd)

    # ------------------------------------------------------------ quarantine

    def quarantine(self, path: bytes | str | os.PathLike[str], *, rule_id: str = "", alert_id: str = "",
                   expect: tuple[int, int] | None = None,
                   protected: Collection[tuple[int, int]] = ()) -> QuarantineRecord:
        """Move the regular file at ``path`` into quarantine.

        ``expect`` is the (superblock dev, inode) the alert's event saw: when
        the name now holds another file, nothing is moved. Files whose (dev,
        inode) is in ``protected`` are refused, and so is a symbolic link (it
        is not the file) or anything but a regular file (:class:`ActionRefused`).
        """
        raw = os.fsencode(path)
        shown = text(raw) or ""
        try:
            with self._dir() as qfd, _parent(raw) as (pfd, name):
                fd = _open_nofollow(name, pfd)
                try:
                    return self._move_in(qfd, pfd, name, fd, raw, rule_id, alert_id, expect, protected)
                finally:
                    os.close(fd)
        except EnforceError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ActionRefused(f"quarantine {shown}: is a symbolic link, not the file") from exc
            raise EnforceError(f"quarantine {shown}: {exc.strerror or exc}") from exc

    def _move_in(self, qfd: int, pfd: int, name: bytes, fd: int, raw: bytes, rule_id: str, alert_id: str,
                 expect: tuple[int, int] | None, protected: Collection[tuple[int, int]]) -> QuarantineRecord:
        shown = text(raw) or ""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ActionRefused(f"quarantine {shown}: not a regular file")
        pst, qst = os.fstat(pfd), os.fstat(qfd)
        if (pst.st_dev, pst.st_ino) == (qst.st_dev, qst.st_ino):
            raise ActionRefused(f"quarantine {shown}: is already in the quarantine directory")
        ident = identity_of_fd(fd, shown)
        if (ident.dev, ident.ino) in protected:
            raise ActionRefused(f"quarantine {shown}: the file is protected (allow-listed or the agent's own)")
        if expect is not None and (ident.dev, ident.ino) != expect:
            raise ActionRefused(f"quarantine {shown}: the file there now (dev {ident.dev}, inode {ident.ino}) is "
                               f"not the one of the event (dev {expect[0]}, inode {expect[1]}): refused")
        qid = f"{time.time_ns():x}-{secrets.token_hex(6)}"
        data_name = f"{qid}.data".encode()
        digest, size = _hash_fd(fd)
        rec = QuarantineRecord(
            qid=qid, path=raw, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
            atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, size=size, sha256=digest,
            quarantined_ns=time.time_ns(), rule_id=rule_id, alert_id=alert_id, dev=ident.dev, ino=ident.ino,
            nlink=st.st_nlink, moved="rename", xattrs=_xattrs(fd))
        # same filesystem: metadata first, then one rename
        self._write_record(qfd, rec)
        try:
            os.rename(name, data_name, src_dir_fd=pfd, dst_dir_fd=qfd)
        except OSError as exc:
            self._remove(qfd, f"{qid}.json")
            if exc.errno != errno.EXDEV:
                raise
            return self._copy_in(qfd, pfd, name, fd, st, rec)
        if not _same_inode(st, data_name, qfd):
            # the name was swapped between our open and the rename: put back what we moved
            with suppress(OSError):
                _renameat2(qfd, data_name, pfd, name)
            self._remove(qfd, f"{qid}.json")
            raise EnforceError(f"quarantine {shown}: the file was replaced while being moved: refused")
        os.fchown(fd, 0, 0)
        os.fchmod(fd, 0)
        os.fsync(qfd)
        _fsync_dir(pfd)
        return rec

    def _copy_in(self, qfd: int, pfd: int, name: bytes, fd: int, st: os.stat_result,
                 rec: QuarantineRecord) -> QuarantineRecord:
        qid = rec.qid
        shown = rec.path_text
        tmp, data_name = f".{qid}.data.tmp", f"{qid}.data"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0, dir_fd=qfd)
        try:
            try:
                digest, size = _copy_fd(fd, out)
                os.fchown(out, 0, 0)
                os.fchmod(out, 0)
                os.fsync(out)
            finally:
                os.close(out)
            os.rename(tmp, data_name, src_dir_fd=qfd, dst_dir_fd=qfd)
            rec = dataclasses.replace(rec, size=size, sha256=digest, moved="copy")
            self._write_record(qfd, rec)
        except BaseException:
            self._remove(qfd, tmp, data_name, f"{qid}.json")
            raise
        # the copy and its record are on disk: now take the original name away, checking it is that file
        aside = f".se-quarantine-{qid}".encode()
        try:
            _renameat2(pfd, name, pfd, aside)
        except OSError:
            self._remove(qfd, data_name, f"{qid}.json")
            raise
        if not _same_inode(st, aside, pfd):
            with suppress(OSError):
                _renameat2(pfd, aside, pfd, name)
            self._remove(qfd, data_name, f"{qid}.json")
            raise EnforceError(f"quarantine {shown}: the file was replaced while being copied: refused")
        try:
            os.unlink(aside, dir_fd=pfd)
        except OSError:
            with suppress(OSError):
                _renameat2(pfd, aside, pfd, name)
            self._remove(qfd, data_name, f"{qid}.json")
            raise
        _fsync_dir(pfd)
        return rec

    # ------------------------------------------------------------ records

    def get(self, qid: str) -> QuarantineRecord:
        """The record of one quarantined file."""
        if not _valid_qid(qid):
            raise EnforceError(f"quarantine: '{qid}' is not a quarantine id")
        with self._dir() as qfd:
            return self._read(qfd, qid)

    def _read(self, qfd: int, qid: str) -> QuarantineRecord:
        try:
            fd = os.open(f"{qid}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=qfd)
        except FileNotFoundError as exc:
            raise EnforceError(f"quarantine: no quarantined file '{qid}' in {self.directory}") from exc
        except OSError as exc:
            raise EnforceError(f"quarantine {qid}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "rb") as f:
                obj = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise EnforceError(f"quarantine {qid}: cannot read its record: {exc}") from exc
        if not isinstance(obj, dict):
            raise EnforceError(f"quarantine {qid}: its record is not a JSON object")
        return QuarantineRecord.from_json(obj)

    def list(self) -> list[QuarantineRecord]:
        """Every file in quarantine, oldest first (records without their file are left out)."""
        out: list[QuarantineRecord] = []
        with self._dir() as qfd:
            names = set(os.listdir(qfd))
            for n in names:
                if n.endswith(".json") and not n.startswith(".") and n[:-5] + ".data" in names:
                    with suppress(EnforceError):
                        out.append(self._read(qfd, n[:-5]))
        return sorted(out, key=lambda r: (r.quarantined_ns, r.qid))

    def data_path(self, qid: str) -> Path:
        """Where the quarantined content of ``qid`` is (for inspection by root)."""
        return self.directory / f"{qid}.data"

    # ------------------------------------------------------------ restore

    def restore(self, qid: str, dest: bytes | str | os.PathLike[str] | None = None) -> QuarantineRecord:
        """Put a quarantined file back (at its original path, or ``dest``) with mode, owner, times, xattrs.

        An existing file at the destination is never replaced. The record and
        the quarantined copy are removed once the file is back.
        """
        if not _valid_qid(qid):
            raise EnforceError(f"quarantine: '{qid}' is not a quarantine id")
        with self._dir() as qfd:
            rec = self._read(qfd, qid)
            target = os.fsencode(dest) if dest is not None else rec.path
            shown = text(target)
            try:
                with _parent(target) as (pfd, name):
                    self._move_out(qfd, rec, pfd, name)
            except EnforceError:
                raise
            except OSError as exc:
                why = "a file with that name exists" if exc.errno == errno.EEXIST else (exc.strerror or str(exc))
                raise EnforceError(f"restore {qid} to {shown}: {why}") from exc
            self._remove(qfd, f"{qid}.json")
            os.fsync(qfd)
            return rec

    def _move_out(self, qfd: int, rec: QuarantineRecord, pfd: int, name: bytes) -> None:
        data_name = f"{rec.qid}.data".encode()
        src = os.open(data_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=qfd)
        try:
            try:
                os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
            try:
                _renameat2(qfd, data_name, pfd, name)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                self._copy_out(src, rec, pfd, name)
                self._remove(qfd, data_name.decode())
            else:
                _apply_meta(src, rec, xattrs=False)
                os.fsync(src)
            _fsync_dir(pfd)
        finally:
            os.close(src)

    @staticmethod
    def _copy_out(src: int, rec: QuarantineRecord, pfd: int, name: bytes) -> None:
        tmp = f".se-restore-{rec.qid}".encode()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            try:
                _copy_fd(src, out)
                _apply_meta(out, rec, xattrs=True)
                os.fsync(out)
            finally:
                os.close(out)
            _renameat2(pfd, tmp, pfd, name)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp, dir_fd=pfd)
            raise


def _apply_meta(fd: int, rec: QuarantineRecord, *, xattrs: bool) -> None:
    """Owner, then mode (chown clears set-id bits), then xattrs, then times (last: the others touch ctime only)."""
    os.fchown(fd, rec.uid, rec.gid)
    os.fchmod(fd, rec.mode)
    if xattrs:
        for k, v in rec.xattrs.items():
            with suppress(OSError):  # security.* may be refused by an LSM; the content matters more
                os.setxattr(fd, k, v)
    os.utime(fd, ns=(rec.atime_ns, rec.mtime_ns))
