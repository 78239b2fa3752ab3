"""The address rules behind web_fetch: what counts as an address, and which are refused."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from extensions.tools.base import ToolError
from extensions.tools.netguard import AddressPolicy, literal_address, refusal_reason


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0x7F.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),  # short form
        ("0xa9fea9fe", "169.254.169.254"),
        ("3232235777", "192.168.1.1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_literal_forms_are_read_as_resolvers_read_them(host: str, address: str) -> None:
    assert literal_address(host) == ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "localhost", "cafe", "0x", "1.2.3.4.5", ""])
def test_names_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.254", "a private address"),
        ("192.168.0.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("100.127.255.254", "a shared (carrier-grade NAT) address"),
        ("::ffff:127.0.0.1", "a loopback address (127.0.0.1 inside an IPv6 address)"),
        ("::ffff:10.0.0.1", "a private address (10.0.0.1 inside an IPv6 address)"),
        (
            "::ffff:169.254.169.254",
            "the cloud metadata address (169.254.169.254 inside an IPv6 address)",
        ),
        ("::127.0.0.1", "a loopback address (127.0.0.1 inside an IPv6 address)"),
        ("64:ff9b::10.0.0.1", "a private address (10.0.0.1 inside an IPv6 address)"),
        ("2002:c0a8:0101::1", "a private address (192.168.1.1 inside an IPv6 address)"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal_reason(ip_address(address)) == reason


@pytest.mark.parametrize("address", ["240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1"])
def test_reserved_and_documentation_ranges_are_refused(address: str) -> None:
    assert refusal_reason(ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # IPv4: every block of IANA's special-purpose registry that is not globally reachable
        ("0.1.2.3", "a 'this network' address"),
        ("192.0.0.1", "an IETF protocol assignment (DS-Lite, NAT64 discovery)"),
        ("192.0.0.8", "an IETF protocol assignment (DS-Lite, NAT64 discovery)"),
        ("192.0.0.170", "an IETF protocol assignment (DS-Lite, NAT64 discovery)"),
        ("192.0.2.1", "a documentation address"),
        ("198.51.100.7", "a documentation address"),
        ("203.0.113.200", "a documentation address"),
        ("198.18.0.1", "a benchmarking address"),
        ("198.19.255.254", "a benchmarking address"),
        ("192.88.99.1", "a deprecated 6to4 relay anycast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "the broadcast address"),
        ("239.255.255.250", "a multicast address"),
        # IPv6
        ("fec0::1", "a site-local address"),
        ("feff:ffff::1", "a site-local address"),
        ("fe00::1", "a reserved address"),
        ("4000::1", "a reserved address"),
        ("100::1", "a discard-only address"),
        ("100:0:0:1::1", "a dummy address"),
        ("2001:2::1", "a benchmarking address"),
        ("2001:10::1", "an overlay identifier (ORCHID), not a routable address"),
        ("2001:20::1", "an overlay identifier (ORCHID), not a routable address"),
        ("2001:db8::1", "a documentation address"),
        ("3fff::1", "a documentation address"),
        ("5f00::1", "a segment routing (SRv6) identifier"),
        ("2001:5::1", "an IETF protocol assignment"),
        ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
        ("::8.8.8.8", "a deprecated IPv4-compatible address"),
        # translation and tunnel forms judged by the IPv4 address they carry
        ("64:ff9b::c0a8:101", "a private address (192.168.1.1 inside an IPv6 address)"),
        (
            "64:ff9b::a9fe:a9fe",
            "the cloud metadata address (169.254.169.254 inside an IPv6 address)",
        ),
        ("2002:0a00:0001::1", "a private address (10.0.0.1 inside an IPv6 address)"),
        ("2002:c000:0201::1", "a documentation address (192.0.2.1 inside an IPv6 address)"),
        # Teredo: server 65.54.227.120, client obfuscated (bits inverted): 10.0.0.1
        (
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "a private address (10.0.0.1 inside an IPv6 address)",
        ),
        # Teredo: server 10.0.0.1, client 8.8.8.8
        ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "a private address (10.0.0.1 inside an IPv6 address)"),
    ],
)
def test_every_special_purpose_range_is_refused(address: str, reason: str) -> None:
    assert refusal_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.9",  # PCP anycast: globally reachable inside 192.0.0.0/24
        "192.0.0.10",  # TURN anycast
        "192.31.196.1",  # AS112
        "192.175.48.1",  # AS112 direct delegation
        "2001:1::1",  # PCP anycast inside 2001::/23
        "2001:3::1",  # AMT
        "2001:4:112::1",  # AS112
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: both IPv4 addresses public
        "2620:4f:8000::1",  # AS112 direct delegation
    ],
)
def test_globally_reachable_special_blocks_pass(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


def _check(policy: AddressPolicy, host: str, *addresses: str) -> str | None:
    try:
        policy.check(host, [ip_address(a) for a in addresses])
    except ToolError as exc:
        return str(exc)
    return None


def test_one_private_answer_refuses_the_host() -> None:
    policy = AddressPolicy(allow_private=False, allowed_hosts=[])
    assert _check(policy, "mixed.example", "93.184.216.34") is None
    assert (
        _check(policy, "mixed.example", "93.184.216.34", "10.0.0.5")
        == "refused: mixed.example resolves to 10.0.0.5, a private address"
    )


def test_allowlist_by_name_wildcard_and_cidr() -> None:
    policy = AddressPolicy(
        allow_private=False,
        allowed_hosts=["Intranet.Example", "*.corp.example", "10.1.0.0/16", "::1"],
    )
    assert _check(policy, "intranet.example", "10.9.9.9") is None
    assert _check(policy, "INTRANET.example.", "10.9.9.9") is None
    assert _check(policy, "wiki.corp.example", "192.168.7.7") is None
    assert _check(policy, "corp.example", "192.168.7.7") is not None
    assert _check(policy, "build.example", "10.1.2.3") is None
    assert _check(policy, "build.example", "::ffff:10.1.2.3") is None
    assert _check(policy, "other.example", "10.2.0.1") is not None
    assert _check(policy, "::1", "::1") is None
    assert _check(policy, "127.0.0.1", "127.0.0.1") == "refused: 127.0.0.1 is a loopback address"


def test_allow_private_allows_everything() -> None:
    policy = AddressPolicy(allow_private=True, allowed_hosts=[])
    assert _check(policy, "169.254.169.254", "169.254.169.254") is None
