"""Community ID (v1) of a flow: the hash other tools (Zeek, Suricata, Elastic) put on the same connection.

Computed by the ``communityid`` package (Corelight's reference Python
implementation of https://github.com/corelight/community-id-spec). For ICMP
and ICMPv6 the spec hashes the message type and code in place of the ports,
mapping a request and its reply to the same value; they are given as
``icmp_type_code``, or as ``sport`` (type) and ``dport`` (code) when that is
None. Protocols without ports (GRE, ESP, ...) hash the addresses only.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

import communityid  # type: ignore[import-untyped]  # no type information shipped

__all__ = ["community_id"]

_PORT_PROTOS = frozenset({6, 17, 132})  # TCP, UDP, SCTP
_ICMP_PROTOS = frozenset({1, 58})  # ICMP, ICMPv6


@lru_cache(maxsize=16)
def _hasher(seed: int) -> communityid.CommunityID:
    return communityid.CommunityID(seed=seed, use_base64=True)


def community_id(proto: int, saddr: str, sport: int, daddr: str, dport: int,
                 icmp_type_code: tuple[int, int] | None = None, *, seed: int = 0) -> str:
    """``1:<base64 sha1>`` of the flow; the same for both directions of it.

    ``saddr``/``daddr`` are IP address text, both IPv4 or both IPv6.
    Raises ValueError for an address that is not one, addresses of two
    families, a port or ICMP type/code out of range, or a seed outside
    0..65535.
    """
    versions = []
    for what, addr in (("source", saddr), ("destination", daddr)):
        try:
            versions.append(ipaddress.ip_address(addr).version)
        except ValueError:
            raise ValueError(f"community_id: {what} address {addr!r} is not an IP address") from None
    if versions[0] != versions[1]:
        raise ValueError(f"community_id: {saddr} and {daddr} are not of the same address family")
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"community_id: seed {seed} is not a 16-bit value")
    if not 0 <= proto <= 255:
        raise ValueError(f"community_id: protocol {proto} is not an IP protocol number")
    if proto in _ICMP_PROTOS:
        mtype, mcode = icmp_type_code if icmp_type_code is not None else (sport, dport)
        if not (0 <= mtype <= 255 and 0 <= mcode <= 255):
            raise ValueError(f"community_id: ICMP type {mtype} / code {mcode} out of range")
        if proto == 1:
            tpl = communityid.FlowTuple.make_icmp(saddr, daddr, mtype, mcode)
        else:
            tpl = communityid.FlowTuple.make_icmp6(saddr, daddr, mtype, mcode)
    elif proto in _PORT_PROTOS:
        if not (0 <= sport <= 0xFFFF and 0 <= dport <= 0xFFFF):
            raise ValueError(f"community_id: port {sport} or {dport} out of range")
        tpl = communityid.FlowTuple(proto, saddr, daddr, sport, dport)
    else:
        tpl = communityid.FlowTuple.make_ip(saddr, daddr, proto)
    hasher = _hasher(seed)
    result: str | None = hasher.calc(tpl)
    if result is None:  # pragma: no cover - every input the package rejects is rejected above
        raise ValueError(f"community_id: {hasher.get_error()}")
    return result
