"""parse_dns on real DNS wire bytes (built with dnspython and by hand): every field, cut and hostile messages."""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_edge.netinspect.dns import DnsMessage, label_entropy, parse_dns, registered_domain


def _response() -> dns.message.Message:
    """A recursive resolver's answer: CNAME chain, two A, one AAAA, a TXT with odd bytes, an MX."""
    q = dns.message.make_query("www.Example.com", "A", id=0x4A2B)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA | dns.flags.AD
    r.answer.append(dns.rrset.from_text("www.Example.com.", 300, "IN", "CNAME", "edge.cdn.example.net."))
    r.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 60, "IN", "A", "192.0.2.10", "192.0.2.11"))
    r.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 60, "IN", "AAAA", "2001:db8::10"))
    r.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 30, "IN", "TXT", '"v=1 \\255\\000 \\"q\\""'))
    r.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 30, "IN", "MX", "10 mx.example.net."))
    return r


def _wire(m: dns.message.Message) -> bytes:
    """Wire bytes in the order the records were added (dnspython shuffles rdatasets by default)."""
    return m.to_wire(want_shuffle=False)


RESPONSE_ANSWERS = [
    {"name": "www.Example.com", "type": "CNAME", "class": "IN", "ttl": 300, "data": "edge.cdn.example.net"},
    {"name": "edge.cdn.example.net", "type": "A", "class": "IN", "ttl": 60, "data": "192.0.2.10"},
    {"name": "edge.cdn.example.net", "type": "A", "class": "IN", "ttl": 60, "data": "192.0.2.11"},
    {"name": "edge.cdn.example.net", "type": "AAAA", "class": "IN", "ttl": 60, "data": "2001:db8::10"},
    {"name": "edge.cdn.example.net", "type": "TXT", "class": "IN", "ttl": 30, "data": '"v=1 \\255\\000 \\"q\\""'},
    {"name": "edge.cdn.example.net", "type": "MX", "class": "IN", "ttl": 30, "data": "10 mx.example.net."},
]


def _entropy(s: bytes) -> float:
    n = len(s)
    return round(-sum(c / n * math.log2(c / n) for c in Counter(s).values()), 4) if n else 0.0


def test_query_every_field() -> None:
    q = dns.message.make_query("a1b2.tunnel.example.com", "TXT", id=0x1234)
    m = parse_dns(q.to_wire(), tcp=False)
    assert m == DnsMessage(
        id=0x1234, response=False, opcode="QUERY", opcode_id=0, rcode="NOERROR", rcode_id=0,
        flags={"aa": False, "tc": False, "rd": True, "ra": False, "ad": False, "cd": False},
        questions=m.questions, answers=(), counts=(1, 0, 0, 0), truncated=False, error=None,
        labels=4, label_max=7, entropy=_entropy(b"a1b2tunnel"),
    )
    assert [x.as_dict() for x in m.questions] == [{"name": "a1b2.tunnel.example.com", "type": "TXT", "class": "IN"}]
    assert m.query == "a1b2.tunnel.example.com"
    d = m.as_dict()
    assert d == {
        "id": 0x1234, "response": False, "opcode": "QUERY", "opcode_id": 0, "rcode": "NOERROR", "rcode_id": 0,
        "flags": {"aa": False, "tc": False, "rd": True, "ra": False, "ad": False, "cd": False},
        "questions": [{"name": "a1b2.tunnel.example.com", "type": "TXT", "class": "IN"}], "answers": [],
        "counts": {"qd": 1, "an": 0, "ns": 0, "ar": 0}, "truncated": False, "error": None, "labels": 4,
        "label_max": 7, "entropy": _entropy(b"a1b2tunnel"), "domain": "example.com",
    }
    json.dumps(d)


def test_response_answers_in_order_with_ttl_and_text() -> None:
    m = parse_dns(_wire(_response()), tcp=False)
    assert (m.id, m.response, m.rcode, m.rcode_id, m.error, m.truncated) == (0x4A2B, True, "NOERROR", 0, None, False)
    assert m.flags == {"aa": False, "tc": False, "rd": True, "ra": True, "ad": True, "cd": False}
    assert [a.as_dict() for a in m.answers] == RESPONSE_ANSWERS
    assert m.counts == (1, 6, 0, 0)
    assert m.as_dict()["domain"] == "example.com"  # lower-cased


def test_nxdomain_with_soa_authority() -> None:
    q = dns.message.make_query("nope.example.org", "AAAA", id=7)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.NXDOMAIN)
    r.flags |= dns.flags.AA
    r.authority.append(dns.rrset.from_text("example.org.", 900, "IN", "SOA",
                                           "ns.example.org. host.example.org. 1 7200 3600 1209600 900"))
    m = parse_dns(r.to_wire(), tcp=False)
    assert (m.response, m.rcode, m.rcode_id, m.answers, m.counts) == (True, "NXDOMAIN", 3, (), (1, 0, 1, 0))
    assert m.flags["aa"] is True


def test_extended_rcode_and_opcode() -> None:
    q = dns.message.make_query("example.com", "A", use_edns=0, id=9)
    r = dns.message.make_response(q)
    r.set_rcode(dns.rcode.BADCOOKIE)  # 23: needs the EDNS extended bits
    m = parse_dns(r.to_wire(), tcp=False)
    assert (m.rcode, m.rcode_id) == ("BADCOOKIE", 23)
    n = dns.message.make_query("example.com", "SOA", id=10)
    n.set_opcode(dns.opcode.NOTIFY)
    m = parse_dns(n.to_wire(), tcp=False)
    assert (m.opcode, m.opcode_id, m.response) == ("NOTIFY", 4, False)


def test_tcp_length_prefix() -> None:
    wire = _wire(_response())
    framed = struct.pack("!H", len(wire)) + wire
    m = parse_dns(framed, tcp=True)
    assert m.error is None and not m.truncated and [a.as_dict() for a in m.answers] == RESPONSE_ANSWERS
    # a second message in the same segment is not part of the first
    m2 = parse_dns(framed + struct.pack("!H", 5) + b"junk!", tcp=True)
    assert m2.error is None and [a.as_dict() for a in m2.answers] == RESPONSE_ANSWERS
    # the copy was cut (dns_max): what fits is reported, truncated
    cut = parse_dns(framed[:120], tcp=True)
    assert cut.truncated and cut.error is not None and cut.id == 0x4A2B
    assert [a.as_dict() for a in cut.answers] == RESPONSE_ANSWERS[: len(cut.answers)]
    assert 1 <= len(cut.answers) < len(RESPONSE_ANSWERS)
    # without the prefix (or the prefix alone) nothing but the fact
    for raw in (b"", b"\x00"):
        e = parse_dns(raw, tcp=True)
        assert (e.id, e.truncated, e.error) == (None, True, "TCP length prefix missing")
    # a length prefix saying more than came, around a complete message
    m3 = parse_dns(struct.pack("!H", len(wire) + 40) + wire, tcp=True)
    assert m3.truncated and [a.as_dict() for a in m3.answers] == RESPONSE_ANSWERS
    assert m3.error == "message cut short (TCP length)"


def test_every_truncation_of_a_real_response() -> None:
    wire = _wire(_response())
    qend = 12 + len(dns.name.from_text("www.Example.com").to_wire()) + 4
    seen_answers = 0
    for n in range(len(wire)):
        m = parse_dns(wire[:n], tcp=False)
        assert m.truncated, n
        assert m.error, n
        if n < 12:
            assert m.id is None and m.questions == () and m.flags == {}
            continue
        assert (m.id, m.response, m.counts) == (0x4A2B, True, (1, 6, 0, 0))
        assert len(m.questions) == (1 if n >= qend else 0), n
        got = [a.as_dict() for a in m.answers]
        assert got == RESPONSE_ANSWERS[: len(got)], n  # a prefix of the real answers, never garbage
        assert len(got) >= seen_answers  # more bytes never give fewer answers
        seen_answers = len(got)
        if m.questions:
            assert (m.labels, m.label_max) == (3, 7)
    assert seen_answers == len(RESPONSE_ANSWERS) - 1
    assert parse_dns(wire, tcp=False).truncated is False


def test_odd_bytes_in_names_are_escaped() -> None:
    name = dns.name.Name([b"a.b", b"\xff\x00 x", b'q"\\;', b"example", b"com", b""])
    q = dns.message.make_query(name, "A", id=1)
    m = parse_dns(q.to_wire(), tcp=False)
    assert m.query == 'a\\.b.\\255\\000\\032x.q\\"\\\\\\;.example.com'
    assert m.query is not None and m.query.isascii()
    assert (m.labels, m.label_max) == (5, 7)  # 'a.b' is one label; the escape is text only
    assert m.entropy == _entropy(b"a.b\xff\x00 xq\"\\;")
    assert m.as_dict()["domain"] == "example.com"
    assert registered_domain("x.a\\.b.C\\.om") == "a\\.b.c\\.om"
    assert registered_domain(".") == "." and registered_domain("localhost") == "localhost"


def test_label_statistics() -> None:
    def stats(name: str) -> tuple[int, int, float]:
        m = parse_dns(dns.message.make_query(name, "A").to_wire(), tcp=False)
        return m.labels, m.label_max, m.entropy

    assert stats("example.com") == (2, 7, 0.0)  # nothing left of the registered domain
    assert stats("abcd.example.com") == (3, 7, 2.0)
    assert stats("AbCd.example.com") == stats("abcd.example.com")  # 0x20 randomisation does not count
    assert stats("aabb.x.example.com") == (4, 7, _entropy(b"aabbx"))
    long = "k" * 63
    assert stats(f"{long}.example.com")[:2] == (3, 63)
    assert label_entropy(b"") == 0.0 and label_entropy(b"ab") == 1.0
    root = parse_dns(dns.message.make_query(".", "NS").to_wire(), tcp=False)
    assert (root.query, root.labels, root.label_max, root.entropy) == (".", 0, 0, 0.0)


def test_compression_loop_and_bad_rdata_are_reported() -> None:
    # the question's name is a compression pointer to itself
    hdr = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    loop = hdr + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    m = parse_dns(loop, tcp=False)
    assert (m.id, m.questions, m.truncated) == (0xBEEF, (), False)
    assert m.error is not None
    # an A record with 3 bytes of rdata: dnspython rejects the message, the salvage keeps the question and
    # shows the record in the generic form
    q = dns.message.make_query("x.example", "A", id=3)
    qw = q.to_wire()
    body = qw[12:]
    hdr = struct.pack("!HHHHHH", 3, 0x8180, 1, 1, 0, 0)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 3) + b"\x01\x02\x03"
    m = parse_dns(hdr + body + rr, tcp=False)
    assert m.error is not None and not m.truncated
    assert [a.as_dict() for a in m.answers] == [
        {"name": "x.example", "type": "A", "class": "IN", "ttl": 60, "data": "\\# 3 010203"}]
    # trailing junk after a whole message
    m = parse_dns(_wire(_response()) + b"\x00\x01", tcp=False)
    assert m.error is not None and [a.as_dict() for a in m.answers] == RESPONSE_ANSWERS


def _check(m: DnsMessage) -> None:
    d: dict[str, Any] = m.as_dict()
    text = json.dumps(d, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")  # no lone surrogates
    for q in d["questions"]:
        assert q["name"].isascii()
    for a in d["answers"]:
        assert a["name"].isascii() and isinstance(a["ttl"], int)
    assert isinstance(d["entropy"], float) and 0.0 <= d["entropy"] <= 8.0
    assert 0 <= d["label_max"] <= 63 and 0 <= d["labels"] <= 127
    if d["error"] is None:
        assert d["id"] is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=600), tcp=st.booleans())
def test_random_bytes_never_raise(raw: bytes, tcp: bool) -> None:
    _check(parse_dns(raw, tcp=tcp))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=12, max_size=300))
def test_random_bodies_behind_a_valid_header_never_raise(raw: bytes) -> None:
    hdr = struct.pack("!HHHHHH", 1, 0x8180, 3, 40, 2, 2)
    _check(parse_dns(hdr + raw, tcp=False))


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400), flips=st.lists(
    st.tuples(st.integers(min_value=0, max_value=399), st.integers(min_value=0, max_value=255)), max_size=4),
    tcp=st.booleans())
def test_truncated_and_corrupted_real_messages_never_raise(cut: int, flips: list[tuple[int, int]],
                                                          tcp: bool) -> None:
    wire = bytearray(_wire(_response()))
    for pos, val in flips:
        if pos < len(wire):
            wire[pos] = val
    data = bytes(wire[:cut])
    if tcp:
        data = struct.pack("!H", len(wire)) + data
    m = parse_dns(data, tcp=tcp)
    _check(m)
    if not flips and cut < len(wire):
        assert m.truncated
        got = [a.as_dict() for a in m.answers]
        assert got == RESPONSE_ANSWERS[: len(got)]


@pytest.mark.parametrize("qtype", ["A", "AAAA", "TXT", "MX", "NS", "PTR", "SRV", "ANY", "HTTPS", "TYPE65280"])
def test_query_types_by_name(qtype: str) -> None:
    m = parse_dns(dns.message.make_query("svc.example.com", qtype).to_wire(), tcp=False)
    assert [q.type for q in m.questions] == [qtype] and m.error is None
