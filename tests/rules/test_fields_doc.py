"""docs/rules.md's Fields table and the field table (rules.fields.FIELDS) name the same fields."""

from __future__ import annotations

import re
from pathlib import Path

from sentinel_edge.rules.fields import FIELDS, lookup, suggest

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def documented_fields() -> list[str]:
    """Every field name in the first cell of the rows of the Fields table."""
    text = DOC.read_text()
    section = text.split("\n## Fields\n", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names += re.findall(r"`([a-z_]+\.[a-z_0-9]+)`", first)
    return names


def test_doc_table_and_fields_agree() -> None:
    doc = documented_fields()
    assert len(doc) == len(set(doc)), f"documented twice: {sorted({n for n in doc if doc.count(n) > 1})}"
    missing_in_code = sorted(set(doc) - set(FIELDS))
    missing_in_doc = sorted(set(FIELDS) - set(doc))
    assert not missing_in_code, f"documented but not in FIELDS: {missing_in_code}"
    assert not missing_in_doc, f"in FIELDS but not documented: {missing_in_doc}"


def test_every_spec_is_well_formed() -> None:
    for name, spec in FIELDS.items():
        assert spec.name == name
        assert spec.type in ("str", "int", "float", "bool", "list[str]", "list[int]"), name
        assert callable(spec.get)
        assert spec.kinds is None or (spec.kinds and all(isinstance(k, str) for k in spec.kinds)), name
        indexed = name in ("proc.aname", "proc.aexe", "proc.acmdline", "proc.apid")
        assert (spec.get_index is not None) == indexed, name


def test_lookup_suggests_the_closest_name() -> None:
    assert lookup("proc.name") is FIELDS["proc.name"]
    assert suggest("proc.nmae") == "proc.name"
    try:
        lookup("proc.nmae")
    except KeyError as exc:
        assert "did you mean 'proc.name'" in str(exc)
    else:
        raise AssertionError("lookup of an unknown field must raise KeyError")
