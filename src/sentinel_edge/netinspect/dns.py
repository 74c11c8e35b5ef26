"""DNS messages copied by the inspector's TC programs, parsed for events and rules.

The bytes come off the wire of a monitored interface, so they are hostile:
:func:`parse_dns` never raises. A message dnspython accepts
(``dns.message.from_wire``) is reported from it; any other is salvaged
record by record with dnspython's lower-level parsers (header, questions,
answers) up to the first thing that cannot be read, and ``error`` says why
the whole message could not be. ``truncated`` is true when the bytes end
inside the message (the kernel copies at most ``dns_max`` bytes; a TCP
segment may carry part of a message), as opposed to bytes that are
malformed.

Names are in DNS presentation format (``dns.name.Name.to_text`` without the
final dot): a byte outside printable ASCII is ``\\DDD`` (decimal) and
``. ; ( ) " @ $ \\`` inside a label are backslash-escaped, so a name is
always plain ASCII text and a dot always separates labels.

Label statistics (for tunnelling rules) describe the first question's name:
its number of labels, its longest label in bytes, and the Shannon entropy
(bits per byte) of the labels left of the registered domain, approximated
as every label except the last two, joined without dots and lower-cased (a
resolver's 0x20 case randomisation must not raise the entropy).
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

__all__ = [
    "DnsAnswer",
    "DnsMessage",
    "DnsQuestion",
    "label_entropy",
    "parse_dns",
    "registered_domain",
]

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_QFIXED = struct.Struct("!HH")  # type, class
_RRFIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
# rdata types whose text is one domain name: shown without the final dot, like the query names
_NAME_RDATA = frozenset({dns.rdatatype.CNAME, dns.rdatatype.DNAME, dns.rdatatype.NS, dns.rdatatype.PTR})


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str
    type: str  # "A", "AAAA", "TXT", ... or "TYPE65280"
    cls: str  # "IN", "CH", ... or "CLASS1234"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "class": self.cls}


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    name: str
    type: str
    cls: str
    ttl: int
    data: str  # rdata in presentation format (``\\# len hex`` when it cannot be decoded)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "class": self.cls, "ttl": self.ttl, "data": self.data}


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """What one DNS message says (as much of it as could be read)."""

    id: int | None  # None: not even the 12-byte header was there
    response: bool  # QR bit
    opcode: str  # "QUERY", "NOTIFY", "UPDATE", ... or the number
    opcode_id: int
    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", ... (with the EDNS extended bits when known)
    rcode_id: int
    flags: dict[str, bool] = field(default_factory=dict)  # aa tc rd ra ad cd
    questions: tuple[DnsQuestion, ...] = ()
    answers: tuple[DnsAnswer, ...] = ()
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)  # qd, an, ns, ar as the header says
    truncated: bool = False  # the bytes end inside the message
    error: str | None = None  # why the message could not be parsed whole (None: it was)
    labels: int = 0  # labels of the first question's name
    label_max: int = 0  # its longest label, in bytes
    entropy: float = 0.0  # bits per byte of its labels left of the registered domain

    @property
    def query(self) -> str | None:
        return self.questions[0].name if self.questions else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the stage stores in ``Event.data["parsed"]``)."""
        return {
            "id": self.id,
            "response": self.response,
            "opcode": self.opcode,
            "opcode_id": self.opcode_id,
            "rcode": self.rcode,
            "rcode_id": self.rcode_id,
            "flags": dict(self.flags),
            "questions": [q.as_dict() for q in self.questions],
            "answers": [a.as_dict() for a in self.answers],
            "counts": {"qd": self.counts[0], "an": self.counts[1], "ns": self.counts[2], "ar": self.counts[3]},
            "truncated": self.truncated,
            "error": self.error,
            "labels": self.labels,
            "label_max": self.label_max,
            "entropy": self.entropy,
            "domain": registered_domain(self.query) if self.query is not None else None,
        }


# ---------------------------------------------------------------- label statistics


def label_entropy(data: bytes) -> float:
    """Shannon entropy of ``data`` in bits per byte (0.0 when empty), rounded to 4 places."""
    n = len(data)
    if n == 0:
        return 0.0
    h = 0.0
    for c in Counter(data).values():
        p = c / n
        h -= p * math.log2(p)
    return round(h, 4)


def _label_stats(name: dns.name.Name) -> tuple[int, int, float]:
    labels = [lab for lab in name.labels if lab]  # without the root label
    if not labels:
        return 0, 0, 0.0
    sub = b"".join(labels[:-2]).lower()
    return len(labels), max(len(lab) for lab in labels), label_entropy(sub)


def registered_domain(name: str) -> str:
    """The last two labels of a presentation-format name, lower-cased (approximates the registered domain)."""
    labels = _split_text(name.rstrip(".") if name != "." else "")
    return ".".join(labels[-2:]).lower() if labels else "."


def _split_text(name: str) -> list[str]:
    """Labels of a presentation-format name (a backslash-escaped dot is not a separator)."""
    out: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(name):
        c = name[i]
        if c == "\\" and i + 1 < len(name):
            cur.append(name[i : i + 2])
            i += 2
            continue
        if c == ".":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur or out:
        out.append("".join(cur))
    return [lab for lab in out if lab]


# ---------------------------------------------------------------- text of the parts


def _name_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _type_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(rdtype)  # type: ignore[arg-type]  # unknown numbers give "TYPE<n>"


def _class_text(rdclass: int) -> str:
    return dns.rdataclass.to_text(rdclass)  # type: ignore[arg-type]


def _rdata_text(rd: dns.rdata.Rdata) -> str:
    try:
        s = rd.to_text()
    except Exception:  # an rdata dnspython decoded but cannot print: its generic form
        s = f"\\# {len(rd.to_digestable())} {rd.to_digestable().hex()}"
    if rd.rdtype in _NAME_RDATA and s.endswith(".") and s != ".":
        s = s[:-1]
    return s


def _opcode_text(n: int) -> str:
    try:
        return dns.opcode.to_text(n)  # type: ignore[arg-type]
    except Exception:
        return str(n)


def _rcode_text(n: int) -> str:
    try:
        return dns.rcode.to_text(n)  # type: ignore[arg-type]
    except Exception:
        return str(n)


def _flags(bits: int) -> dict[str, bool]:
    return {
        "aa": bool(bits & dns.flags.AA),
        "tc": bool(bits & dns.flags.TC),
        "rd": bool(bits & dns.flags.RD),
        "ra": bool(bits & dns.flags.RA),
        "ad": bool(bits & dns.flags.AD),
        "cd": bool(bits & dns.flags.CD),
    }


def _error_text(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {msg}"[:200]


# ---------------------------------------------------------------- parsing


def parse_dns(msg: bytes, tcp: bool) -> DnsMessage:
    """Parse one DNS message as copied from a packet; never raises.

    With ``tcp`` the message starts with its 2-byte length (RFC 1035
    4.2.2); bytes after that length (the next message of the segment) are
    ignored.
    """
    wire = bytes(msg)
    cut = False
    if tcp:
        if len(wire) < 2:
            return _empty(truncated=True, error="TCP length prefix missing")
        (length,) = struct.unpack_from("!H", wire)
        body = wire[2 : 2 + length]
        cut = len(body) < length
        wire = body
    try:
        m = dns.message.from_wire(wire, ignore_trailing=False, question_only=False)
    except Exception as exc:  # hostile bytes: anything dnspython raises is reported, never raised
        return _salvage(wire, _error_text(exc), cut)
    try:
        return _from_message(m, len(wire), cut)
    except Exception as exc:  # pragma: no cover - dnspython accepted a message it cannot describe
        return _salvage(wire, _error_text(exc), cut)


def _empty(*, truncated: bool, error: str) -> DnsMessage:
    return DnsMessage(id=None, response=False, opcode="QUERY", opcode_id=0, rcode="NOERROR", rcode_id=0,
                      truncated=truncated, error=error)


def _from_message(m: dns.message.Message, size: int, cut: bool) -> DnsMessage:
    questions = tuple(DnsQuestion(_name_text(rr.name), _type_text(rr.rdtype), _class_text(rr.rdclass))
                      for rr in m.question)
    answers = tuple(
        DnsAnswer(_name_text(rrset.name), _type_text(rdata.rdtype), _class_text(rdata.rdclass), int(rrset.ttl),
                  _rdata_text(rdata))
        for rrset in m.answer
        for rdata in rrset
    )
    labels, label_max, ent = _label_stats(m.question[0].name) if m.question else (0, 0, 0.0)
    opcode = int(m.opcode())
    rcode = int(m.rcode())
    counts = (m.section_count(dns.message.QUESTION), m.section_count(dns.message.ANSWER),
              m.section_count(dns.message.AUTHORITY), m.section_count(dns.message.ADDITIONAL))
    return DnsMessage(
        id=m.id, response=bool(m.flags & dns.flags.QR), opcode=_opcode_text(opcode), opcode_id=opcode,
        rcode=_rcode_text(rcode), rcode_id=rcode, flags=_flags(m.flags), questions=questions, answers=answers,
        counts=counts, truncated=cut, error="message cut short (TCP length)" if cut else None,
        labels=labels, label_max=label_max, entropy=ent,
    )


def _salvage(wire: bytes, error: str, cut: bool) -> DnsMessage:
    """Header, questions and answers up to the first record that cannot be read."""
    if len(wire) < HEADER.size:
        return _empty(truncated=True, error=error)
    ident, bits, qd, an, ns, ar = HEADER.unpack_from(wire)
    end = len(wire)
    cur = HEADER.size
    questions: list[DnsQuestion] = []
    answers: list[DnsAnswer] = []
    first: dns.name.Name | None = None
    truncated = cut
    try:
        for _ in range(qd):
            if _name_cut(wire, cur):
                truncated = True
                break
            name, used = dns.name.from_wire(wire, cur)
            if cur + used + _QFIXED.size > end:
                truncated = True
                break
            rdtype, rdclass = _QFIXED.unpack_from(wire, cur + used)
            cur += used + _QFIXED.size
            questions.append(DnsQuestion(_name_text(name), _type_text(rdtype), _class_text(rdclass)))
            if first is None:
                first = name
        else:
            for _ in range(an):
                if _name_cut(wire, cur):
                    truncated = True
                    break
                name, used = dns.name.from_wire(wire, cur)
                if cur + used + _RRFIXED.size > end:
                    truncated = True
                    break
                rdtype, rdclass, ttl, rdlen = _RRFIXED.unpack_from(wire, cur + used)
                start = cur + used + _RRFIXED.size
                if start + rdlen > end:
                    truncated = True
                    break
                answers.append(DnsAnswer(_name_text(name), _type_text(rdtype), _class_text(rdclass), ttl,
                                         _salvage_rdata(wire, rdclass, rdtype, start, rdlen)))
                cur = start + rdlen
    except Exception:  # a record whose bytes are all there but do not parse: malformed, the rest is unknown
        pass
    labels, label_max, ent = _label_stats(first) if first is not None else (0, 0, 0.0)
    opcode = (bits >> 11) & 0xF
    rcode = bits & 0xF
    return DnsMessage(
        id=ident, response=bool(bits & dns.flags.QR), opcode=_opcode_text(opcode), opcode_id=opcode,
        rcode=_rcode_text(rcode), rcode_id=rcode, flags=_flags(bits), questions=tuple(questions),
        answers=tuple(answers), counts=(qd, an, ns, ar), truncated=truncated, error=error,
        labels=labels, label_max=label_max, entropy=ent,
    )


def _name_cut(wire: bytes, pos: int) -> bool:
    """The encoded name at ``pos`` (its own labels, up to the end or a pointer) runs past the bytes."""
    end = len(wire)
    while pos < end:
        n = wire[pos]
        if n == 0:
            return False
        if n & 0xC0 == 0xC0:
            return pos + 2 > end
        if n & 0xC0:  # reserved label types: malformed, not cut
            return False
        pos += 1 + n
    return True


def _salvage_rdata(wire: bytes, rdclass: int, rdtype: int, start: int, rdlen: int) -> str:
    try:
        rd = dns.rdata.from_wire(rdclass, rdtype, wire, start, rdlen)  # type: ignore[arg-type]
        return _rdata_text(rd)
    except Exception:  # undecodable rdata: RFC 3597 generic form
        return f"\\# {rdlen} {wire[start : start + rdlen].hex()}".rstrip()
