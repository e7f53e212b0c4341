"""Who is on the other end of a connection, for limits kept per client address.

The TCP peer is the client, unless the peer is a proxy the policy trusts (`trusted_proxies`,
CIDRs; none by default). A trusted proxy's forwarded-for header (`forwarded_header`:
`X-Forwarded-For`, or RFC 7239 `Forwarded`) is read from its end, the hop nearest to us, back
towards the client, as long as each hop was written by a trusted proxy: the first address that
is not trusted is the client. Hops further out were written by the client itself and are never
believed, so a client cannot pick the address its failures are counted under. Only the header
the trusted proxies write is read: a client's own copy of the other one passes through them
unchanged and would be a forgery. An entry that is not an address (`unknown`, an obfuscated
`_hidden`, garbage) ends the walk at the proxy that wrote it.

Failures are counted per client (`counted_as`): an IPv4 address, or an IPv6 client's network of
the policy's `client_ipv6_prefix` bits (64 by default), since a host given a /64 could otherwise
take a fresh address for every guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]


def parse_networks(written: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs as an operator writes them; ValueError saying what is wrong with the first bad one.
    A network with host bits set and one that holds every address are refused: the first is
    most likely a typo, the second would let any client name its own address."""
    return tuple(_network(text) for text in written)


def _network(text: str) -> Network:
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP network (write a CIDR, e.g. 10.0.0.0/8)") from None
    if ipaddress.ip_interface(text.strip()).ip != loose.network_address:
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?")
    if loose.prefixlen == 0:
        raise ValueError(f"{text!r} holds every address, so any client could name its own")
    return loose


def client_address(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: Sequence[Network],
    header: ForwardedHeader = "x-forwarded-for",
) -> str:
    """The client's address: the peer, or what trusted proxies forwarded for (module doc)."""
    client = _address(peer)
    if client is None:
        return peer or "unknown"
    for hop in reversed(_hops(headers, header)):
        if not _trusted(client, trusted):
            break
        forwarded = _address(hop)
        if forwarded is None:
            break
        client = forwarded
    return str(client)


def counted_as(address: str, ipv6_prefix: int) -> str:
    """What a client's failures are counted under: its IPv4 address, or the IPv6 network of
    `ipv6_prefix` bits holding it (a host is routinely given a whole /64, and could otherwise
    try from a new address each time)."""
    parsed = _address(address)
    if parsed is None:
        return address
    if parsed.version == 4:
        return str(parsed)
    return str(ipaddress.ip_network(f"{parsed}/{ipv6_prefix}", strict=False))


def connection_key(
    trusted: Sequence[Network], ipv6_prefix: int, *, gateway: bool
) -> Callable[[str], str | None]:
    """What a connection from a peer address is counted under (gateway/listen.py's bound per
    client): `counted_as`, or None, not counted: a trusted proxy, whose clients are known only per
    request, and every peer of a sidecar (`gateway` False), whose one client, the app in its
    pod, connects from loopback with all its concurrency."""

    def key(peer: str) -> str | None:
        parsed = _address(peer)
        if not gateway or (parsed is not None and _trusted(parsed, trusted)):
            return None
        return counted_as(peer, ipv6_prefix)

    return key


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _hops(headers: Mapping[str, str], header: ForwardedHeader) -> list[str]:
    """Every hop's address, nearest last (repeated headers are one list, in order)."""
    values = _all(headers, header)
    hops = [hop.strip() for value in values for hop in value.split(",")]
    if header == "forwarded":
        return [_forwarded_for(element) for element in hops]
    return [_host(hop) for hop in hops]


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    return [value for key, value in headers.items() if key.lower() == name]


def _forwarded_for(element: str) -> str:
    """The `for=` of one RFC 7239 element, unquoted; "" when it has none."""
    for pair in element.split(";"):
        name, _, value = pair.strip().partition("=")
        if name.strip().lower() == "for":
            return _host(value.strip().strip('"'))
    return ""


def _host(value: str) -> str:
    """An address without the port some proxies add: `192.0.2.1:443`, `[2001:db8::1]:443`."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.split(":")[0] if value.count(":") == 1 else value


def _address(text: str | None) -> Address | None:
    """The address in `text`; an IPv4-mapped IPv6 one (a dual-stack socket's) as IPv4."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return address if mapped is None else mapped
