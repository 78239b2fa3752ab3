"""Which addresses ``web_fetch`` may connect to: public ones, unless the config says so.

Every hop is checked on the addresses the host actually resolves to, and the request is
then sent to one of those checked addresses (see ``web_fetch``), so a name cannot be
re-resolved to something else between the check and the connection.

Host strings that a resolver reads as an IPv4 address (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are read the same way here, with ``socket.inet_aton``'s
rules, before any DNS lookup; IPv6 forms that carry an IPv4 address (mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, 6to4 ``2002::/16``, Teredo ``2001::/32``,
NAT64 ``64:ff9b::/96``) are judged by the IPv4 address inside as well as by themselves.

Public means globally reachable in IANA's special-purpose address registries: every
block listed there as not globally reachable is refused (documentation, benchmarking,
discard-only, ORCHID, DS-Lite, ...), and so is IPv6 outside ``2000::/3`` (site-local
``fec0::/10`` and the other blocks IANA reserves).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from extensions.tools.base import ToolError

Address = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[Address]]]
"""``(host, port) -> addresses``; replaceable so tests control DNS answers."""

_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_TEREDO = IPv6Network("2001::/32")
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_METADATA = {IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")}

# The IANA special-purpose address registries (iana-ipv4-special-registry and
# iana-ipv6-special-registry), with multicast, site-local and the cloud metadata
# addresses added; checked in order, the first match decides. ``None`` marks a block
# that IANA lists as globally reachable inside a larger block that is not. Written out
# rather than read from ``ipaddress.is_global``, whose answers differ between Python
# versions (and which counts fec0::/10, the deprecated site-local block, as global).
_IPV4_RANGES: tuple[tuple[IPv4Network, str | None], ...] = tuple(
    (IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/32", "an unspecified address"),
        ("0.0.0.0/8", "a 'this network' address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.169.254/32", "the cloud metadata address"),
        ("169.254.0.0/16", "a link-local address"),
        ("224.0.0.0/4", "a multicast address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("192.0.0.9/32", None),  # Port Control Protocol anycast
        ("192.0.0.10/32", None),  # TURN anycast
        ("192.0.0.0/24", "an IETF protocol assignment (DS-Lite, NAT64 discovery)"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a deprecated 6to4 relay anycast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
_IPV6_RANGES: tuple[tuple[IPv6Network, str | None], ...] = tuple(
    (IPv6Network(network), reason)
    for network, reason in (
        ("::1/128", "a loopback address"),
        ("::/128", "an unspecified address"),
        ("fd00:ec2::254/128", "the cloud metadata address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
        ("fc00::/7", "a private address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("100:0:0:1::/64", "a dummy address"),
        ("2001::/32", None),  # Teredo: judged by the IPv4 addresses inside
        ("2001:1::1/128", None),  # Port Control Protocol anycast
        ("2001:1::2/128", None),  # TURN anycast
        ("2001:1::3/128", None),  # DNS-SD service registration anycast
        ("2001:3::/32", None),  # AMT
        ("2001:4:112::/48", None),  # AS112
        ("2001:2::/48", "a benchmarking address"),
        # ORCHIDs are identifiers, not locators: never routed (RFC 7343).
        ("2001:10::/28", "an overlay identifier (ORCHID), not a routable address"),
        ("2001:20::/28", "an overlay identifier (ORCHID), not a routable address"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "a segment routing (SRv6) identifier"),
    )
)


def literal_address(host: str) -> Address | None:
    """``host`` as an address when it is written as one, in any form resolvers accept."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if not bare or not all(c.isalnum() or c == "." for c in bare):
        return None
    try:
        return IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _is_standard_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """The IPv4 addresses a translation or tunnel form carries (the connection goes to,
    or through, them)."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    if address in _NAT64 or (
        address in _IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified)
    ):
        return [IPv4Address(int(address) & 0xFFFF_FFFF)]
    return []


def refusal_reason(address: Address) -> str | None:
    """Why ``address`` is not public (``"a private address"``), or None if it is."""
    if isinstance(address, IPv4Address):
        return _listed_reason(address, _IPV4_RANGES)
    for inner in _embedded_ipv4(address):
        if reason := refusal_reason(inner):
            return f"{reason} ({inner} inside an IPv6 address)"
    if address.ipv4_mapped is not None:  # the connection goes to the IPv4 address
        return None
    if listed := _listed_reason(address, _IPV6_RANGES):
        return listed
    if address in _IPV4_COMPATIBLE:
        return "a deprecated IPv4-compatible address"
    if address not in _GLOBAL_UNICAST and address not in _NAT64:
        return "a reserved address"  # IANA allocates unicast space only from 2000::/3
    return None


def _listed_reason(
    address: Address, ranges: Iterable[tuple[IPv4Network | IPv6Network, str | None]]
) -> str | None:
    """The reason of the first listed block holding ``address`` (None: a public one)."""
    for network, reason in ranges:
        if address in network:
            return reason
    return None


async def system_resolver(host: str, port: int) -> list[Address]:
    """The system's answers for ``host``, looked up off the event loop, in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(f"cannot resolve {host}: {exc.strerror}") from None
    found: dict[Address, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        found[ipaddress.ip_address(sockaddr[0])] = None
    return list(found)


class AddressPolicy:
    """The config's refusal rule and its exceptions (``allowed_hosts``)."""

    def __init__(self, *, allow_private: bool, allowed_hosts: Iterable[str]) -> None:
        self.allow_private = allow_private
        self.hosts: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[IPv4Network | IPv6Network] = []
        for raw in allowed_hosts:
            entry = raw.strip().lower().rstrip(".")
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                self.hosts.add(entry)

    def host_allowed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    def address_allowed(self, address: Address) -> bool:
        candidates: list[Address] = [address]
        if isinstance(address, IPv6Address):
            candidates.extend(_embedded_ipv4(address))
        return any(
            a in net for a in candidates for net in self.networks if a.version == net.version
        )

    def check(self, host: str, addresses: list[Address]) -> None:
        """Raise ``ToolError`` if any of ``addresses`` (what ``host`` resolved to) is
        refused. One bad answer refuses the host: the connection could use any of them."""
        if self.allow_private or self.host_allowed(host):
            return
        if not addresses:
            raise ToolError(f"cannot resolve {host}: no addresses")
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None or self.address_allowed(address):
                continue
            if literal_address(host) is None:
                raise ToolError(f"refused: {host} resolves to {address}, {reason}")
            if _is_standard_literal(host):
                raise ToolError(f"refused: {host.strip('[]')} is {reason}")
            raise ToolError(f"refused: {host} means {address}, {reason}")


async def resolve_checked(
    policy: AddressPolicy, host: str, port: int, resolver: Resolver
) -> list[Address]:
    """The addresses to connect to for ``host``, every one of them allowed."""
    literal = literal_address(host)
    addresses = [literal] if literal is not None else await resolver(host, port)
    policy.check(host, addresses)
    return addresses
