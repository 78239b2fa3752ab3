"""Which addresses ``web_fetch`` may connect to: public ones, unless the config says so.

Every hop is checked on the addresses the host actually resolves to, and the request is
then sent to one of those checked addresses (see ``web_fetch``), so a name cannot be
re-resolved to something else between the check and the connection.

Host strings that a resolver reads as an IPv4 address (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are read the same way here, with ``socket.inet_aton``'s
rules, before any DNS lookup; IPv6 forms that carry an IPv4 address (mapped
``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``)
are judged by the IPv4 address inside as well as by themselves.
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

_CGNAT = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_METADATA = {IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")}


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


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (
        address in _IPV4_COMPATIBLE and not (address.is_loopback or address.is_unspecified)
    ):
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal_reason(address: Address) -> str | None:
    """Why ``address`` is not public (``"a private address"``), or None if it is."""
    if isinstance(address, IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None and (reason := refusal_reason(inner)):
            return f"{reason} ({inner} inside an IPv6 address)"
        if address.ipv4_mapped is not None:  # the connection goes to the IPv4 address
            return None
    if address.is_loopback:
        return "a loopback address"
    if address in _METADATA:
        return "the cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, IPv4Address) and address in _CGNAT:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
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
        if isinstance(address, IPv6Address) and (inner := _embedded_ipv4(address)):
            candidates.append(inner)
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
