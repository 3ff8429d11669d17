"""Which network addresses a user-named URL may be fetched from (the SSRF policy of ``fetch``).

Loopback, private and shared (carrier-grade NAT) addresses are refused unless a service's
setting allows private networks; cloud metadata, link-local, multicast, reserved and
unspecified addresses are refused whatever the setting. An IPv6 address that stands for an
IPv4 host (mapped, compatible, NAT64) is judged by that host; 6to4 and Teredo addresses by
both the IPv6 address and the IPv4 endpoints they carry.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside link-local (AWS over IPv6, Alibaba Cloud). Link-local itself
# (169.254.0.0/16, fe80::/10: AWS, GCP, Azure, ECS task metadata) is refused wholesale.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, internal in some clouds
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv4-mapped, IPv4-compatible or NAT64 address stands for: the same host, in IPv6 dress."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):  # ::a.b.c.d, deprecated; not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 endpoints a 6to4 or Teredo address carries: checked beside the IPv6 address itself."""
    found = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _kind(ip: IPAddress) -> tuple[str, bool] | None:
    """(what the address is, whether allow_private admits it), or None for a public address."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address", False
    if ip.is_link_local:
        return "a link-local address", False
    if ip.is_multicast:
        return "a multicast address", False
    if ip.is_unspecified:
        return "the unspecified address", False
    if ip.is_loopback:  # before is_reserved: Python files ::1 under ::/8, reserved
        return "a loopback address", True
    if ip.is_reserved:
        return "a reserved address", False
    if ip.is_private:
        return "a private address", True
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_ADDRESS_SPACE:
        return "a shared (carrier-grade NAT) address", True
    if not ip.is_global:
        return "a non-public address", True
    return None


def address_refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` must not be fetched from, or None when it may be."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        # Judged by the IPv4 host alone: Python files these prefixes under ::/8, reserved, which would
        # refuse a public site reached through NAT64 and let nothing say why a mapped loopback is refused.
        candidates = [translated] if translated is not None else [address, *_tunnelled_ipv4(address)]
    for candidate in candidates:
        kind = _kind(candidate)
        if kind is None:
            continue
        what, private = kind
        if private and allow_private:
            continue
        shown = f"{address} ({candidate})" if candidate != address else str(address)
        return f"{shown} is {what}, not a public address"
    return None




def parse_ip(host: str) -> IPAddress | None:
    """The IP address a URL's host is written as (IPv6 in brackets too), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
