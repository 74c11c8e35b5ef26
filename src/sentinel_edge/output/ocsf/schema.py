"""Validation of emitted objects against the one pinned OCSF schema.

The schema data is the official OCSF export of :data:`OCSF_VERSION` as shipped
inside the ``ocsf-json-schema`` package (``ocsf_json_schema/ocsf/<ver>.json``,
read as JSON, never the optional pickle). That package turns an OCSF class plus
a set of profiles into a JSON Schema (draft 2020-12) with every referenced
object embedded; ``jsonschema`` checks the object against it. The generated
schema is strict: unknown attributes (``additionalProperties: false``), wrong
types, missing required attributes, enum values the class does not define,
string patterns and ranges all fail.

On top of the JSON Schema, :func:`validate` checks the OCSF rules JSON Schema
cannot express: ``metadata.version`` is the pinned version, ``type_uid`` is
``class_uid * 100 + activity_id``, declared profiles exist for the class and
their extensions are declared, caption siblings (``class_name``,
``activity_name``, ``type_name``, ``severity`` ...) match the enum captions,
no deprecated attribute is used, every string is valid Unicode (no lone
surrogates) and every integer fits in a signed 64-bit ``long_t``.

Schemas are built lazily and cached per ``(class_uid, profiles)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from sentinel_edge.errors import OutputError

#: The OCSF schema version every object is written in and validated against.
OCSF_VERSION = "1.8.0"

#: Python distribution that ships the schema data, pinned in pyproject.toml.
SCHEMA_PACKAGE = "ocsf-json-schema==1.2.0"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class SchemaViolation(OutputError):
    """An OCSF object does not validate against the pinned schema."""

    def __init__(self, obj: dict[str, Any] | Any, errors: list[str]) -> None:
        self.errors = errors
        cls = obj.get("class_uid") if isinstance(obj, dict) else None
        head = f"OCSF {OCSF_VERSION} class {cls}: {len(errors)} schema error(s)"
        super().__init__(head + "\n  " + "\n  ".join(errors))


# ---------------------------------------------------------------- loading


@cache
def raw_schema() -> dict[str, Any]:
    """The OCSF export of :data:`OCSF_VERSION` (classes, objects, dictionary)."""
    path = resources.files("ocsf_json_schema") / "ocsf" / f"{OCSF_VERSION}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # pragma: no cover - broken install
        raise OutputError(
            f"cannot load the OCSF {OCSF_VERSION} schema from {path} (install {SCHEMA_PACKAGE}): {exc}"
        ) from exc
    if data.get("version") != OCSF_VERSION:  # pragma: no cover - broken install
        raise OutputError(f"{path} holds OCSF {data.get('version')!r}, expected {OCSF_VERSION}")
    return data


@cache
def _classes_by_uid() -> dict[int, dict[str, Any]]:
    return {int(c["uid"]): c for c in raw_schema()["classes"].values()}


def class_def(class_uid: int) -> dict[str, Any]:
    """The OCSF definition of one event class; OutputError when unknown."""
    try:
        return _classes_by_uid()[class_uid]
    except KeyError:
        raise OutputError(f"OCSF {OCSF_VERSION} has no class_uid {class_uid}") from None


def enum_caption(class_uid: int, attribute: str, value: int) -> str | None:
    """Caption of an enum value of a class attribute (``None`` if undefined)."""
    attr = class_def(class_uid)["attributes"].get(attribute) or {}
    item = (attr.get("enum") or {}).get(str(value))
    return None if item is None else str(item["caption"])


def extension_of(profile: str) -> dict[str, Any] | None:
    """The extension (name, uid, version) a profile belongs to, if any."""
    prof = raw_schema()["profiles"].get(profile)
    if prof is None or not prof.get("extension"):
        return None
    ext: dict[str, Any] = raw_schema()["extensions"][prof["extension"]]
    return {"name": ext["name"], "uid": str(ext["uid"]), "version": ext["version"]}


@cache
def _validator(class_uid: int, profiles: tuple[str, ...]) -> Draft202012Validator:
    from ocsf_json_schema import OcsfJsonSchemaEmbedded  # type: ignore[import-untyped]

    gen = OcsfJsonSchemaEmbedded(raw_schema())
    js: dict[str, Any] = gen.get_class_schema(class_def(class_uid)["name"], list(profiles))
    Draft202012Validator.check_schema(js)
    return Draft202012Validator(js)


def class_schema(class_uid: int, profiles: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema an object of this class and these profiles must satisfy."""
    schema: dict[str, Any] = _validator(class_uid, tuple(sorted(set(profiles)))).schema  # type: ignore[assignment]
    return schema


# ---------------------------------------------------------------- checks


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _walk_values(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_values(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_values(v, (*path, i))


def _json_errors(obj: dict[str, Any]) -> list[str]:
    """The object must be JSON text as written: JSON types, Unicode, int64."""
    errors: list[str] = []
    for path, v in _walk_values(obj):
        where = _path(path)
        if isinstance(v, dict):
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                errors.append(f"{where}: non-string keys {bad!r}")
        elif isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as exc:
                errors.append(f"{where}: not valid Unicode text ({exc.reason} at {exc.start})")
        elif isinstance(v, bool) or v is None or isinstance(v, list):
            pass
        elif isinstance(v, int):
            if not _INT64_MIN <= v <= _INT64_MAX:
                errors.append(f"{where}: integer {v} does not fit in a signed 64-bit long")
        elif isinstance(v, float):
            if not math.isfinite(v):
                errors.append(f"{where}: {v} is not representable in JSON")
        else:
            errors.append(f"{where}: {type(v).__name__} is not a JSON type")
    return errors


def _deprecated(value: Any, schema: dict[str, Any], root: dict[str, Any], path: str) -> Iterator[str]:
    """Attributes the pinned schema marks deprecated (the object is already valid)."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _deprecated(item, schema["items"], root, f"{path}[{i}]")
    elif isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, v in value.items():
            sub = props.get(k)
            if sub is None:
                continue
            where = f"{path}.{k}" if path else k
            if sub.get("deprecated"):
                yield f"{where}: attribute is deprecated in OCSF {OCSF_VERSION}"
            yield from _deprecated(v, sub, root, where)


def _caption_errors(obj: dict[str, Any], class_uid: int) -> list[str]:
    cdef = class_def(class_uid)
    errors: list[str] = []

    def expect(name: str, want: str | None, *, free_when: int | None = None, id_attr: str = "") -> None:
        if name not in obj:
            return
        if free_when is not None and obj.get(id_attr) == free_when:
            if not isinstance(obj[name], str) or not obj[name]:
                errors.append(f"{name}: must be a non-empty string describing {id_attr}={free_when}")
            return
        if want is not None and obj[name] != want:
            errors.append(f"{name}: {obj[name]!r} does not match the schema caption {want!r}")

    expect("class_name", cdef["caption"])
    expect("category_name", cdef.get("category_name"))
    for id_attr, name in (
        ("activity_id", "activity_name"),
        ("severity_id", "severity"),
        ("status_id", "status"),
    ):
        value = obj.get(id_attr)
        want = enum_caption(class_uid, id_attr, value) if isinstance(value, int) else None
        expect(name, want, free_when=99, id_attr=id_attr)
    tuid = obj.get("type_uid")
    if isinstance(tuid, int):
        expect("type_name", enum_caption(class_uid, "type_uid", tuid))
    return errors


def validate(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` violates the pinned OCSF schema; empty when valid."""
    if not isinstance(obj, dict):
        return [f"<root>: an OCSF event is a JSON object, not {type(obj).__name__}"]
    errors = _json_errors(obj)
    class_uid = obj.get("class_uid")
    if not isinstance(class_uid, int) or isinstance(class_uid, bool):
        return [*errors, f"class_uid: {class_uid!r} is not an integer class id"]
    if class_uid not in _classes_by_uid():
        return [*errors, f"class_uid: {class_uid} is not a class of OCSF {OCSF_VERSION}"]
    cdef = class_def(class_uid)

    meta = obj.get("metadata")
    profiles: list[str] = []
    if isinstance(meta, dict):
        if meta.get("version") != OCSF_VERSION:
            errors.append(f"metadata.version: {meta.get('version')!r} is not the pinned {OCSF_VERSION!r}")
        declared = meta.get("profiles", [])
        if isinstance(declared, list) and all(isinstance(p, str) for p in declared):
            allowed = set(cdef.get("profiles") or [])
            for p in declared:
                if p not in allowed:
                    errors.append(f"metadata.profiles: {p!r} is not a profile of class {cdef['name']}")
                    continue
                profiles.append(p)
                ext = extension_of(p)
                if ext is None:
                    continue
                exts = meta.get("extensions")
                have = (
                    [e for e in exts if isinstance(e, dict) and e.get("name") == ext["name"]]
                    if isinstance(exts, list)
                    else []
                )
                if not have:
                    errors.append(f"metadata.extensions: profile {p!r} needs extension {ext['name']!r}")
                elif have[0].get("version") != ext["version"]:
                    errors.append(
                        f"metadata.extensions: {ext['name']} version {have[0].get('version')!r} "
                        f"is not {ext['version']!r}"
                    )

    activity_id = obj.get("activity_id")
    if isinstance(activity_id, int) and obj.get("type_uid") != class_uid * 100 + activity_id:
        errors.append(
            f"type_uid: {obj.get('type_uid')!r} is not class_uid*100+activity_id "
            f"= {class_uid * 100 + activity_id}"
        )

    validator = _validator(class_uid, tuple(sorted(set(profiles))))
    schema_errors = sorted(
        validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    for err in schema_errors:
        msg = err.message
        if len(msg) > 300:
            msg = msg[:300] + "..."
        errors.append(f"{_path(err.absolute_path)}: {msg}")
    if not schema_errors:
        root: dict[str, Any] = validator.schema  # type: ignore[assignment]
        errors.extend(_deprecated(obj, root, root, ""))
    errors.extend(_caption_errors(obj, class_uid))
    return errors


def assert_valid(obj: dict[str, Any]) -> None:
    """Raise :class:`SchemaViolation` listing every error when ``obj`` is invalid."""
    errors = validate(obj)
    if errors:
        raise SchemaViolation(obj, errors)
