"""community_id against the Community ID spec's published baseline and an independent implementation.

The vectors are from the spec repository (corelight/community-id-spec,
baseline/baseline_deflt.json and baseline_seed1.json: flows of the spec's
sample pcaps with the value every conforming implementation must give).
For TCP/UDP/SCTP/other protocols the value is also recomputed here from the
algorithm as the spec describes it (SHA-1 over seed, addresses, protocol,
a pad byte and ports, the smaller endpoint first; base64; "1:" prefix) on
random flows.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_edge.netinspect.community import community_id

# (proto, saddr, daddr, sport, dport, seed 0, seed 1); ICMP: sport = type, dport = code; proto 46: no ports
BASELINE = [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0,
     "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    (58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134,
     "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    (46, "10.1.12.2", "10.1.12.1", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
]


@pytest.mark.parametrize("vec", BASELINE, ids=[f"{v[0]}-{v[1]}-{v[3]}" for v in BASELINE])
def test_spec_baseline(vec: tuple[int, str, str, int, int, str, str]) -> None:
    proto, saddr, daddr, sport, dport, want0, want1 = vec
    assert community_id(proto, saddr, sport, daddr, dport) == want0
    assert community_id(proto, saddr, sport, daddr, dport, seed=1) == want1
    if proto in (1, 58):  # the same given as an explicit (type, code)
        assert community_id(proto, saddr, 0, daddr, 0, (sport, dport)) == want0


def reference(proto: int, saddr: str, sport: int, daddr: str, dport: int, seed: int = 0) -> str:
    """Community ID v1 as the spec describes it (for protocols with ports, or none)."""
    sa, da = ipaddress.ip_address(saddr).packed, ipaddress.ip_address(daddr).packed
    ports = proto in (6, 17, 132)
    if (sa, sport) > (da, dport) if ports else sa > da:
        sa, da, sport, dport = da, sa, dport, sport
    data = struct.pack("!H", seed) + sa + da + struct.pack("!BB", proto, 0)
    if ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


_v4 = st.ip_addresses(v=4).map(str)
_v6 = st.ip_addresses(v=6).map(str)
_port = st.integers(min_value=0, max_value=65535)


@settings(max_examples=300, deadline=None)
@given(v6=st.booleans(), data=st.data(), proto=st.sampled_from([6, 17, 132, 47, 50, 0, 255]), sport=_port,
       dport=_port, seed=st.integers(min_value=0, max_value=65535))
def test_matches_the_algorithm_and_is_symmetric(v6: bool, data: st.DataObject, proto: int, sport: int, dport: int,
                                                seed: int) -> None:
    addr = _v6 if v6 else _v4
    saddr, daddr = data.draw(addr), data.draw(addr)
    got = community_id(proto, saddr, sport, daddr, dport, seed=seed)
    assert got == reference(proto, saddr, sport, daddr, dport, seed)
    assert community_id(proto, daddr, dport, saddr, sport, seed=seed) == got
    assert got.startswith("1:") and len(got) == 30


def test_icmp_request_and_reply_share_an_id() -> None:
    req = community_id(1, "10.0.0.1", 0, "10.0.0.2", 0, (8, 0))
    rep = community_id(1, "10.0.0.2", 0, "10.0.0.1", 0, (0, 0))
    assert req == rep
    req6 = community_id(58, "fd00::1", 0, "fd00::2", 0, (128, 0))
    assert req6 == community_id(58, "fd00::2", 0, "fd00::1", 0, (129, 0))


@pytest.mark.parametrize(("args", "kw", "message"), [
    ((6, "10.0.0.1", 1, "nope", 2), {}, "destination address 'nope' is not an IP address"),
    ((6, "10.0.0.300", 1, "10.0.0.2", 2), {}, "source address '10.0.0.300' is not an IP address"),
    ((6, "10.0.0.1", 1, "fd00::2", 2), {}, "are not of the same address family"),
    ((6, "10.0.0.1", 70000, "10.0.0.2", 2), {}, "port 70000 or 2 out of range"),
    ((1, "10.0.0.1", 300, "10.0.0.2", 0), {}, "ICMP type 300 / code 0 out of range"),
    ((1, "10.0.0.1", 0, "10.0.0.2", 0, (8, 256)), {}, "ICMP type 8 / code 256 out of range"),
    ((6, "10.0.0.1", 1, "10.0.0.2", 2), {"seed": 65536}, "seed 65536 is not a 16-bit value"),
    ((256, "10.0.0.1", 0, "10.0.0.2", 0), {}, "protocol 256 is not an IP protocol number"),
])
def test_bad_input_is_a_value_error(args: tuple[object, ...], kw: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        community_id(*args, **kw)  # type: ignore[arg-type]
