"""Absolute host paths for file events whose kernel side could not resolve them.

The file sensor reports the raw path as the process gave it plus ``base``, the
absolute directory a relative path is relative to (its dirfd or cwd). When the
kernel has no ``resolved`` path (a failed open, unlink, rename ...),
:func:`resolve` builds one: ``base`` + ``raw``, normalized, with symlinks in the
directory part resolved through the filesystem as it is *now* (best effort:
the event may be old, the directory gone or replaced). Paths are ``bytes``
end to end: kernel paths need not be UTF-8, and nothing here may raise on
hostile names (newlines, invalid UTF-8, 4 KiB names, NUL bytes).
"""

from __future__ import annotations

import os
import posixpath

__all__ = ["normalize", "resolve"]


def normalize(path: bytes) -> bytes:
    """Lexically normalized absolute path: no ``.``, ``..`` or repeated ``/``."""
    if not path.startswith(b"/"):
        path = b"/" + path
    out: list[bytes] = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if out:
                out.pop()
            continue
        out.append(part)
    return b"/" + b"/".join(out)


def _join_root(root: bytes, path: bytes) -> bytes:
    return path if root in (b"", b"/") else root.rstrip(b"/") + path


def _strip_root(root: bytes, path: bytes) -> bytes:
    if root in (b"", b"/"):
        return path
    r = root.rstrip(b"/")
    if path == r:
        return b"/"
    if path.startswith(r + b"/"):
        return path[len(r) :]
    return path  # a symlink escaped the root: report where it really points


def _realpath(root: bytes, path: bytes) -> bytes | None:
    """realpath() of `path` under `root`, or None when it cannot be resolved now."""
    if b"\0" in path:
        return None
    full = _join_root(root, path)
    try:
        if not os.path.lexists(full):
            return None
        real = os.path.realpath(full)
    except (OSError, ValueError):
        return None
    return _strip_root(root, real)


def resolve(base: bytes, raw: bytes, *, follow: bool, root: str = "/") -> bytes:
    """Absolute, normalized host path of `raw` taken relative to `base`.

    `raw` absolute: `base` is ignored. An empty `raw` names `base` itself
    (``AT_EMPTY_PATH``). The directory part is resolved through symlinks when
    it exists on the filesystem under `root`; the final component is followed
    only when `follow` is true (the syscall followed it). Falls back to the
    lexical normalization when the filesystem cannot answer. Never raises.
    """
    rootb = os.fsencode(root)
    if raw.startswith(b"/"):
        joined = raw
    elif not raw:
        joined = base or b"/"
    else:
        joined = (base or b"/").rstrip(b"/") + b"/" + raw
    # a trailing "/" or "." / ".." final component names a directory: no split
    stripped = joined.rstrip(b"/")
    last = stripped.rsplit(b"/", 1)[-1]
    if not stripped or last in (b".", b".."):
        real = _realpath(rootb, joined)
        return real if real is not None else normalize(joined)
    dirpart, name = stripped.rsplit(b"/", 1)
    # the kernel resolves ".." after symlinks: let realpath see the raw text
    realdir = _realpath(rootb, dirpart or b"/")
    parent = realdir if realdir is not None else normalize(dirpart or b"/")
    path = posixpath.join(parent, name)
    if follow:
        real = _realpath(rootb, path)
        if real is not None:
            return real
    return path
