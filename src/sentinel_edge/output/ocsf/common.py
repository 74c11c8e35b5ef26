"""Builders shared by every OCSF class mapping.

One OCSF version is pinned (:data:`OCSF_VERSION`, see
:mod:`sentinel_edge.output.ocsf.schema`); every emitted object carries it in
``metadata.version``, declares the profiles it uses in ``metadata.profiles``
(:data:`PROFILES`: ``host``, ``container`` and the Linux extension's
``linux/linux_users``, which adds ``process.euid/egid/auid/group``) and
validates against that schema (see tests/output/test_ocsf_schema.py).

Attacker-controlled bytes (paths, argv, comm) are turned into text with
:func:`text`: valid UTF-8 stays as is, every byte that is not valid UTF-8
becomes the four characters ``\\xNN`` and a backslash becomes ``\\\\``, so the
text is valid JSON, readable, and :func:`untext` gets the exact bytes back.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentinel_edge import __version__
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.output.ocsf.schema import OCSF_VERSION, class_def, enum_caption, extension_of

__all__ = [
    "OCSF_VERSION",
    "PROFILES",
    "HostInfo",
    "actor",
    "base",
    "epoch_ms",
    "finish",
    "mapper_for",
    "process_entity",
    "process_object",
    "register",
    "status_from_ret",
    "text",
    "untext",
]

SEVERITY_INFORMATIONAL = 1
STATUS_SUCCESS = 1
STATUS_FAILURE = 2
STATUS_UNKNOWN = 0
ACTIVITY_OTHER = 99

#: OCSF profiles every object declares (and may therefore use).
PROFILES: tuple[str, ...] = ("container", "host", "linux/linux_users")

FILE_TYPE_REGULAR = 1
DEVICE_TYPE_UNKNOWN = 0
OS_TYPE_LINUX = 200

_UNSET_ID = 0xFFFFFFFF  # (u32)-1: loginuid / uid "not set"


@dataclass(slots=True, frozen=True)
class HostInfo:
    """The device every event is observed on."""

    hostname: str
    boot_id: str
    boot_time_ns: int  # wall-clock ns at boot: converts bpf boot-ns to epoch
    machine_id: str | None = None  # /etc/machine-id: stable across boots
    kernel_release: str | None = None  # uname -r


# ---------------------------------------------------------------- text


def text(raw: bytes | str | None) -> str | None:
    """Kernel bytes (or an ``os.fsdecode`` str) as lossless JSON-safe text.

    Valid UTF-8 is kept, ``\\`` becomes ``\\\\`` and every other byte that is
    not valid UTF-8 becomes ``\\xNN``. A ``str`` is taken as a file-system
    string (undecodable bytes as surrogate escapes, as ``os.fsdecode`` gives)
    and goes through the same rule; never pass text already escaped here.
    """
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def untext(s: str) -> bytes:
    """Inverse of :func:`text`: the exact bytes back."""
    out = bytearray()
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] == "\\":
            out += b"\\"
            i += 2
        elif c == "\\" and s[i + 1 : i + 2] == "x" and _is_hex(s[i + 2 : i + 4]):
            out.append(int(s[i + 2 : i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def split_nul(raw: bytes | None) -> list[str]:
    """NUL-separated strings (argv) as a list of :func:`text` strings."""
    if not raw:
        return []
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [text(p) or "" for p in parts]


# ---------------------------------------------------------------- time


def boot_ns_to_ms(ns: int, host: HostInfo) -> int:
    """Epoch milliseconds of a CLOCK_BOOTTIME timestamp."""
    return (host.boot_time_ns + ns) // 1_000_000


def epoch_ms(event: Event, host: HostInfo) -> int:
    """OCSF ``time``: epoch milliseconds of the kernel timestamp."""
    return boot_ns_to_ms(event.ts_ns, host)


# ---------------------------------------------------------------- process


def _user(uid: int | None, name: str | None) -> dict[str, Any] | None:
    obj: dict[str, Any] = {}
    if uid is not None and uid != _UNSET_ID:
        obj["uid"] = str(uid)
    if name:
        obj["name"] = name
    return obj or None


def _proc_of(info: ProcessInfo, event: Event | None) -> dict[str, Any] | None:
    """The raw se_proc of the event when it describes this process."""
    if event is None or event.proc.get("pid") != info.pid:
        return None
    start = event.proc.get("start_ns")
    if start and info.start_ns and start != info.start_ns:
        return None
    return event.proc


def _raw_process(p: dict[str, Any], host: HostInfo | None) -> dict[str, Any]:
    """Process object from the kernel's se_proc alone (no enrichment)."""
    obj: dict[str, Any] = {"pid": p["pid"], "ptid": p["tid"], "name": text(p["comm"]) or ""}
    user = _user(p["uid"], None)
    if user:
        obj["user"] = user
    obj["euid"] = p["euid"]
    obj["egid"] = p["egid"]
    obj["group"] = {"uid": str(p["gid"])}
    if p.get("loginuid", _UNSET_ID) != _UNSET_ID:
        obj["auid"] = p["loginuid"]
    if p.get("ns_pid") is not None:
        obj["namespace_pid"] = p["ns_pid"]
    if host is not None and p.get("start_ns"):
        obj["created_time"] = boot_ns_to_ms(p["start_ns"], host)
    return obj


# Objects built from a ProcessInfo are the same for every event of that image
# (until enrichment changes one of its fields), so they are built once and
# reused: the OCSF stage is the agent's most expensive per-event step.
# The cached dicts are shallow-copied; their nested objects (user, group,
# file, container) are shared, so mappers replace them and never mutate them.
_CACHE_MAX = 8192
_static_cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_entity_cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()


def _info_key(info: ProcessInfo, host: HostInfo | None) -> tuple[Any, ...]:
    return (
        info.exec_id, info.pid, info.start_ns, info.comm, info.exe, info.cwd, id(info.cmdline),
        info.uid, info.user, info.gid, info.group, info.euid, info.loginuid, info.container_id,
        info.container_runtime, host.boot_time_ns if host is not None else None,
    )


def _cached(cache: OrderedDict[tuple[Any, ...], dict[str, Any]], key: tuple[Any, ...],
            build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    obj = cache.get(key)
    if obj is None:
        obj = build()
        cache[key] = obj
        if len(cache) > _CACHE_MAX:
            cache.popitem(last=False)
    return obj


def _static_process(info: ProcessInfo, host: HostInfo | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"pid": info.pid, "uid": info.exec_id, "name": text(info.comm) or ""}
    if info.exe:
        exe = text(info.exe) or ""
        obj["path"] = exe
        obj["file"] = file_object(exe)
    if info.cmdline is not None:
        obj["cmd_line"] = " ".join(text(a) or "" for a in info.cmdline)
    if info.cwd:
        obj["working_directory"] = text(info.cwd)
    user = _user(info.uid, info.user)
    if user:
        obj["user"] = user
    group = _user(info.gid, info.group)
    if group:
        obj["group"] = group
    if info.container_id:
        container: dict[str, Any] = {"uid": info.container_id}
        if info.container_runtime:
            container["runtime"] = info.container_runtime
        obj["container"] = container
    if host is not None and info.start_ns:
        obj["created_time"] = boot_ns_to_ms(info.start_ns, host)
    return obj


def process_object(
    info: ProcessInfo | None, event: Event | None = None, *, host: HostInfo | None = None
) -> dict[str, Any]:
    """OCSF Process object from enrichment, falling back to the raw se_proc.

    ``event.proc`` adds what only the kernel knows (tid, effective ids,
    namespace pid) when it describes the same process. With ``host`` the
    process start time becomes ``created_time``.
    """
    if info is None:
        if event is None:
            raise ValueError("process_object needs a ProcessInfo or an Event")
        return _raw_process(event.proc, host)
    static = _cached(_static_cache, _info_key(info, host), lambda: _static_process(info, host))
    obj = dict(static)
    p = _proc_of(info, event)
    if p is not None:
        obj["ptid"] = p["tid"]
    euid = p["euid"] if p is not None else info.euid
    if euid is not None and euid != _UNSET_ID:
        obj["euid"] = euid
    if p is not None:
        obj["egid"] = p["egid"]
        obj["namespace_pid"] = p["ns_pid"]
    loginuid = info.loginuid if info.loginuid is not None else (p["loginuid"] if p is not None else None)
    if loginuid is not None and loginuid != _UNSET_ID:
        obj["auid"] = loginuid
    if "created_time" in obj:  # keep the attribute order of the schema's examples
        obj["created_time"] = obj.pop("created_time")
    return obj


def _build_entity(info: ProcessInfo, host: HostInfo | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"pid": info.pid, "uid": info.exec_id, "name": text(info.comm) or ""}
    if info.exe:
        obj["path"] = text(info.exe)
    if info.cmdline is not None:
        obj["cmd_line"] = " ".join(text(a) or "" for a in info.cmdline)
    if host is not None and info.start_ns:
        obj["created_time"] = boot_ns_to_ms(info.start_ns, host)
    return obj


def process_entity(info: ProcessInfo, host: HostInfo | None = None) -> dict[str, Any]:
    """OCSF Process Entity: the short reference used in ``ancestry``."""
    return dict(_cached(_entity_cache, _info_key(info, host), lambda: _build_entity(info, host)))


def file_object(path: str, **extra: Any) -> dict[str, Any]:
    """OCSF File object of a regular file from its (already :func:`text`) path."""
    name = path.rsplit("/", 1)[-1] or path
    obj: dict[str, Any] = {"name": name, "path": path, "type_id": FILE_TYPE_REGULAR}
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent or path.startswith("/"):
        obj["parent_folder"] = parent or "/"
    obj.update({k: v for k, v in extra.items() if v is not None})
    return obj


#: Events that carry the whole ``ancestry``; every other event has
#: ``parent_process`` only and reaches the rest through the exec event of the
#: same ``process.uid`` (exec_id). Full ancestry on every file open would
#: multiply the output size for nothing new.
LINEAGE_KINDS = frozenset({"exec", "fork"})


def with_lineage(
    obj: dict[str, Any],
    event: Event,
    *,
    host: HostInfo | None = None,
    parent: ProcessInfo | None = None,
    ancestry: list[ProcessInfo] | None = None,
) -> dict[str, Any]:
    """Attach ``parent_process`` and ``ancestry`` (nearest ancestor first).

    Defaults to ``event.parent`` / ``event.ancestry``; without enrichment
    the parent is known by pid (and start time) from the raw se_proc.
    """
    parent = event.parent if parent is None else parent
    ancestry = event.ancestry if ancestry is None else ancestry
    if parent is not None:
        obj["parent_process"] = process_object(parent, host=host)
    elif event.proc.get("pid") == obj.get("pid") and event.proc.get("ppid"):
        pp: dict[str, Any] = {"pid": event.proc["ppid"]}
        if host is not None and event.proc.get("parent_start_ns"):
            pp["created_time"] = boot_ns_to_ms(event.proc["parent_start_ns"], host)
        obj["parent_process"] = pp
    if event.kind not in LINEAGE_KINDS:
        return obj
    if ancestry:
        obj["ancestry"] = [process_entity(a, host) for a in ancestry]
    elif parent is not None:
        obj["ancestry"] = [process_entity(parent, host)]
    return obj


def actor(event: Event, host: HostInfo | None = None) -> dict[str, Any]:
    """OCSF Actor: the process that did the thing (and its user)."""
    proc = with_lineage(process_object(event.process, event, host=host), event, host=host)
    out: dict[str, Any] = {"process": proc}
    if "user" in proc:
        out["user"] = dict(proc["user"])
    return out


def proc_context(event: Event) -> dict[str, Any]:
    """Kernel context not covered by OCSF, kept under ``unmapped.proc``."""
    p = event.proc
    ctx = {
        "pid": p["pid"],
        "tid": p["tid"],
        "ppid": p["ppid"],
        "ns_pid": p["ns_pid"],
        "uid": p["uid"],
        "euid": p["euid"],
        "gid": p["gid"],
        "egid": p["egid"],
        "loginuid": p["loginuid"],
        "cgroup_id": p["cgroup_id"],
        "mnt_ns": p["mnt_ns"],
        "pid_ns": p["pid_ns"],
        "net_ns": p["net_ns"],
        "comm": text(p["comm"]),
        "cpu": event.cpu,
        "ktime_ns": event.ts_ns,
    }
    # present in every kernel event; absent from the agent's own health events
    for key in ("sessionid", "start_ns", "parent_start_ns"):
        v = p.get(key)
        if v is not None:
            ctx[key] = v
    return ctx


# ---------------------------------------------------------------- base


def _metadata(event: Event) -> dict[str, Any]:
    extensions: list[dict[str, Any]] = []
    for prof in PROFILES:
        ext = extension_of(prof)
        if ext is not None and ext not in extensions:
            extensions.append(ext)
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {
            "name": "SentinelEdge",
            "vendor_name": "SentinelEdge",
            "version": __version__,
        },
        "profiles": list(PROFILES),
        "event_code": event.kind,
    }
    if extensions:
        meta["extensions"] = extensions
    return meta


@functools.lru_cache(maxsize=64)
def _metadata_for(kind: str) -> dict[str, Any]:
    return _metadata(Event(kind, 0, 0, 0, {}, {}))


def _metadata_cached(kind: str) -> dict[str, Any]:
    """A copy of the (constant) metadata of an event kind; nested objects are shared."""
    return dict(_metadata_for(kind))


@functools.lru_cache(maxsize=4)
def _device_for(host: HostInfo) -> dict[str, Any]:
    return _device(host)


def _device_cached(host: HostInfo) -> dict[str, Any]:
    return dict(_device_for(host))


def _device(host: HostInfo) -> dict[str, Any]:
    os_obj: dict[str, Any] = {"name": "Linux", "type_id": OS_TYPE_LINUX}
    if host.kernel_release:
        os_obj["kernel_release"] = host.kernel_release
    return {
        "hostname": host.hostname,
        "uid": host.machine_id or host.boot_id,
        "boot_uid": host.boot_id,
        "boot_time": host.boot_time_ns // 1_000_000,
        "type_id": DEVICE_TYPE_UNKNOWN,
        "os": os_obj,
    }


def base(
    event: Event,
    host: HostInfo,
    *,
    class_uid: int,
    category_uid: int,
    activity_id: int,
    status_id: int | None = None,
    message: str | None = None,
    activity_name: str | None = None,
    with_proc: bool = True,
) -> dict[str, Any]:
    """Fields every OCSF event has.

    Caption siblings (``class_name``, ``activity_name``, ``type_name``,
    ``severity``, ``status``) come from the pinned schema (see :func:`finish`);
    ``activity_name`` is for activity 99 (Other) and says what the activity was.
    ``with_proc=False``: the event has no calling task (packets seen by the
    network inspector with no known socket owner): no ``actor`` from the raw
    se_proc and no ``unmapped.proc``; an enriched process, when there is one,
    is still the actor.
    """
    cdef = class_def(class_uid)
    if cdef.get("category_uid") != category_uid:
        raise ValueError(f"class {class_uid} is in category {cdef.get('category_uid')}, not {category_uid}")
    if enum_caption(class_uid, "activity_id", activity_id) is None:
        raise ValueError(f"class {class_uid} has no activity_id {activity_id}")
    obj: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": category_uid,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": SEVERITY_INFORMATIONAL,
        "time": epoch_ms(event, host),
        "metadata": _metadata_cached(event.kind),
        "device": _device_cached(host),
        "unmapped": {"event": event.kind},
    }
    if with_proc:
        obj["actor"] = actor(event, host)
        obj["unmapped"]["proc"] = proc_context(event)
    elif event.process is not None:  # attributed without the raw se_proc (replayed objects)
        obj["actor"] = actor(event, host)
    if activity_name:
        obj["activity_name"] = activity_name
    if status_id is not None:
        obj["status_id"] = status_id
    if message:
        obj["message"] = message
    return obj  # the registered mapper's result goes through finish()


@functools.lru_cache(maxsize=4096)
def _captions(class_uid: int, activity_id: int, severity_id: int | None,
              status_id: int | None) -> tuple[tuple[str, str | None], ...]:
    """(attribute, caption) pairs derived from the ids, from the pinned schema."""
    cdef = class_def(class_uid)
    out: list[tuple[str, str | None]] = [("class_name", cdef["caption"]), ("category_name", cdef["category_name"])]
    for id_attr, name, value in (
        ("activity_id", "activity_name", activity_id),
        ("severity_id", "severity", severity_id),
        ("status_id", "status", status_id),
    ):
        out.append((name, None if value is None else enum_caption(class_uid, id_attr, value)))
    out.append(("type_name", enum_caption(class_uid, "type_uid", class_uid * 100 + activity_id)))
    return tuple(out)


def finish(obj: dict[str, Any]) -> dict[str, Any]:
    """Make the derived attributes agree with the ids a mapper set.

    ``type_uid`` and the caption siblings (``class_name``, ``category_name``,
    ``activity_name``, ``type_name``, ``severity``, ``status``) are computed
    from the pinned schema. For the value 99 (Other) a name the mapper set is
    kept (it says what "other" was); otherwise the caption "Other" is used.
    Every registered mapper's result goes through here, so a mapper may change
    ``activity_id`` or ``severity_id`` after :func:`base`.
    """
    class_uid = obj["class_uid"]
    activity_id = obj["activity_id"]
    obj["type_uid"] = class_uid * 100 + activity_id
    ids = {"activity_name": activity_id, "severity": obj.get("severity_id"), "status": obj.get("status_id")}
    for name, caption in _captions(class_uid, activity_id, obj.get("severity_id"), obj.get("status_id")):
        if name in ids:
            value = ids[name]
            if value is None:
                obj.pop(name, None)
                continue
            if value == ACTIVITY_OTHER and isinstance(obj.get(name), str) and obj[name]:
                continue
        if caption is not None:
            obj[name] = caption
    return obj


@functools.lru_cache(maxsize=512)
def _failure(code: int) -> dict[str, Any]:
    return {"status_code": errno.errorcode.get(code, str(code)), "status_detail": os.strerror(code)}


def status_from_ret(ret: int) -> tuple[int, dict[str, Any]]:
    """OCSF status_id plus status_code/status_detail from a syscall result."""
    if ret >= 0:
        return STATUS_SUCCESS, {}
    return STATUS_FAILURE, dict(_failure(-ret))


# ---------------------------------------------------------------- registry

Mapper = Callable[[Event, HostInfo], dict[str, Any]]

_MAPPERS: dict[str, Mapper] = {}


def register(kind: str) -> Callable[[Mapper], Mapper]:
    """Decorator: the OCSF mapping of one event kind."""

    def deco(fn: Mapper) -> Mapper:
        @functools.wraps(fn)
        def finished(event: Event, host: HostInfo) -> dict[str, Any]:
            return finish(fn(event, host))

        old = _MAPPERS.get(kind)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(
                f"event kind {kind!r} already has an OCSF mapper: {old.__module__}.{old.__qualname__}"
            )
        _MAPPERS[kind] = finished
        return finished  # callers of the module-level name get finished objects too

    return deco


def mapper_for(kind: str) -> Mapper | None:
    return _MAPPERS.get(kind)


def registered_kinds() -> list[str]:
    """Every event kind with a mapper (for tests and --validate)."""
    return sorted(_MAPPERS)


def now_ns() -> int:
    return time.time_ns()
