"""web_fetch's refusals, pinning and argument handling, with the network faked.

The shared client here has an ``httpx.MockTransport`` that records what reaches it, so
"refused before any connection" is checked directly: nothing reaches the transport.
DNS answers come from a fake resolver. Real sockets are exercised in
tests/e2e/test_web_fetch.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from extensions.tools.base import ToolContext
from extensions.tools.config import ToolsConfig, WebFetchConfig
from extensions.tools.html_text import html_to_text
from extensions.tools.netguard import Address
from extensions.tools.web_fetch import WebFetchTool

PUBLIC = "93.184.216.34"


class Net:
    """A fake DNS and a recording transport that answers every request with ``reply``."""

    def __init__(self, dns: dict[str, list[str]] | None = None) -> None:
        self.dns = dns or {}
        self.lookups: list[str] = []
        self.requests: list[httpx.Request] = []
        self.reply: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(
            200, text="fine", headers={"content-type": "text/plain"}
        )

    async def resolve(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        if host not in self.dns:
            raise AssertionError(f"unexpected lookup of {host}")
        return [ipaddress.ip_address(a) for a in self.dns[host]]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    async def fetch(self, arguments: Any, **config: Any) -> str:
        tool_config = WebFetchConfig(**config)
        tool = WebFetchTool(tool_config, resolver=self.resolve)
        async with httpx.AsyncClient(transport=httpx.MockTransport(self.handler)) as http:
            context = ToolContext(http=http, config=ToolsConfig(web_fetch=tool_config))
            return await tool.run(arguments, context)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.1/", "error: refused: 10.0.0.1 is a private address"),
        ("http://10.255.255.254:8080/x", "error: refused: 10.255.255.254 is a private address"),
        ("http://172.16.0.1/", "error: refused: 172.16.0.1 is a private address"),
        ("https://192.168.1.1/", "error: refused: 192.168.1.1 is a private address"),
        ("http://127.0.0.1/", "error: refused: 127.0.0.1 is a loopback address"),
        (
            "http://169.254.169.254/latest/meta-data/iam/",
            "error: refused: 169.254.169.254 is the cloud metadata address",
        ),
        ("http://[::1]/", "error: refused: ::1 is a loopback address"),
        ("http://[fe80::1]/", "error: refused: fe80::1 is a link-local address"),
        ("http://[fd00::1]/", "error: refused: fd00::1 is a private address"),
        ("http://0.0.0.0/", "error: refused: 0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "error: refused: 224.0.0.1 is a multicast address"),
        ("http://100.64.1.1/", "error: refused: 100.64.1.1 is a shared (carrier-grade NAT)"),
        (
            "http://[::ffff:169.254.169.254]/",
            "error: refused: ::ffff:169.254.169.254 is the cloud metadata address "
            "(169.254.169.254 inside an IPv6 address)",
        ),
        (
            "http://[::ffff:7f00:1]/",
            "error: refused: ::ffff:7f00:1 is a loopback address (127.0.0.1 inside",
        ),
        ("http://2130706433/", "error: refused: 2130706433 means 127.0.0.1, a loopback"),
        ("http://0x7f000001/", "error: refused: 0x7f000001 means 127.0.0.1, a loopback"),
        ("http://0xA9FEA9FE/", "error: refused: 0xa9fea9fe means 169.254.169.254, the cloud"),
        ("http://0177.1/", "error: refused: 0177.1 means 127.0.0.1, a loopback"),
        ("http://127.1/", "error: refused: 127.1 means 127.0.0.1, a loopback"),
        ("http://167772161/", "error: refused: 167772161 means 10.0.0.1, a private address"),
        ("http://0177.0.0.1/", "error: invalid URL 'http://0177.0.0.1/'"),
    ],
)
async def test_private_literals_refused_before_any_connection(url: str, expected: str) -> None:
    net = Net()
    text = await net.fetch({"url": url})
    assert text.startswith(expected)
    assert net.requests == [] and net.lookups == []


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    net = Net({"intranet.example": ["10.0.0.5"], "mixed.example": [PUBLIC, "192.168.0.9"]})
    assert (
        await net.fetch({"url": "http://intranet.example/"})
        == "error: refused: intranet.example resolves to 10.0.0.5, a private address"
    )
    assert (
        await net.fetch({"url": "https://mixed.example/"})
        == "error: refused: mixed.example resolves to 192.168.0.9, a private address"
    )
    assert net.requests == []


async def test_request_is_pinned_to_the_checked_address() -> None:
    """DNS rebinding: the second lookup would say 127.0.0.1, but there is none."""
    net = Net()
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[Address]:
        net.lookups.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    net.resolve = rebinding  # type: ignore[method-assign]
    text = await net.fetch({"url": "https://rebind.example:8443/page?q=1"})
    assert text == "URL: https://rebind.example:8443/page?q=1\n\nfine"
    assert net.lookups == ["rebind.example"]
    (sent,) = net.requests
    assert str(sent.url) == f"https://{PUBLIC}:8443/page?q=1"
    assert sent.headers["host"] == "rebind.example:8443"
    assert sent.extensions["sni_hostname"] == "rebind.example"
    assert "cookie" not in sent.headers and sent.headers["accept-encoding"] == "identity"


async def test_ipv6_answers_are_pinned_with_brackets() -> None:
    net = Net({"v6.example": ["2606:4700::1111"]})
    assert (await net.fetch({"url": "http://v6.example/"})).endswith("fine")
    assert str(net.requests[0].url) == "http://[2606:4700::1111]/"
    assert net.requests[0].headers["host"] == "v6.example"


async def test_next_address_is_tried_when_one_does_not_connect() -> None:
    net = Net({"dual.example": ["2606:4700::1111", PUBLIC]})
    ok = net.reply

    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.host == "2606:4700::1111":
            raise httpx.ConnectError("network unreachable")
        return ok(request)

    net.reply = reply
    assert (await net.fetch({"url": "http://dual.example/"})).endswith("fine")
    assert [r.url.host for r in net.requests] == ["2606:4700::1111", PUBLIC]


async def test_every_redirect_hop_is_checked() -> None:
    net = Net({"public.example": [PUBLIC], "sneaky.example": ["10.0.0.7"]})
    hops = {
        "/": "/next",
        "/next": "http://sneaky.example/",
    }

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": hops[request.url.path]})

    net.reply = reply
    text = await net.fetch({"url": "http://public.example/"})
    assert text == "error: refused: sneaky.example resolves to 10.0.0.7, a private address"
    assert [r.url.path for r in net.requests] == ["/", "/next"]
    assert all(r.url.host == PUBLIC for r in net.requests)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://169.254.169.254/latest/", "169.254.169.254 is the cloud metadata address"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 is a private address"),
        ("file:///etc/passwd", "scheme file in 'file:///etc/passwd'"),
        ("gopher://public.example/", "scheme gopher"),
    ],
)
async def test_redirects_to_refused_targets(location: str, expected: str) -> None:
    net = Net({"public.example": [PUBLIC]})
    net.reply = lambda request: httpx.Response(301, headers={"location": location})
    text = await net.fetch({"url": "http://public.example/"})
    assert text.startswith(f"error: refused: {expected}")
    assert len(net.requests) == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/file", "error: refused: scheme ftp in 'ftp://example.com/file'"),
        ("file:///etc/passwd", "error: refused: scheme file"),
        ("javascript:alert(1)", "error: refused: scheme javascript"),
        ("example.com/page", "error: refused: scheme (none)"),
        ("http:///nohost", "error: invalid URL"),
    ],
)
async def test_only_http_and_https(url: str, expected: str) -> None:
    net = Net()
    assert (await net.fetch({"url": url})).startswith(expected)
    assert net.requests == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "error: invalid arguments: Object missing required field `url`"),
        ({"url": ""}, "error: invalid arguments: Expected `str` of length >= 1 - at `$.url`"),
        ({"url": 5}, "error: invalid arguments: Expected `str`, got `int` - at `$.url`"),
        (["http://x"], "error: invalid arguments: expected a JSON object, got an array"),
        ("http://x", "error: invalid arguments: expected a JSON object, got a string"),
    ],
)
async def test_bad_arguments_come_back_as_error_text(arguments: Any, expected: str) -> None:
    assert await Net().fetch(arguments) == expected


async def test_allowlist_and_allow_private_open_the_way() -> None:
    net = Net({"intranet.example": ["10.0.0.5"], "wiki.corp.example": ["10.9.0.1"]})
    assert (await net.fetch({"url": "http://intranet.example/"}, allow_private=True)).endswith(
        "fine"
    )
    allowed = {"allowed_hosts": ["*.corp.example", "10.0.0.0/24"]}
    assert (await net.fetch({"url": "http://wiki.corp.example/"}, **allowed)).endswith("fine")
    assert (await net.fetch({"url": "http://10.0.0.77/"}, **allowed)).endswith("fine")
    assert (await net.fetch({"url": "http://10.0.1.1/"}, **allowed)).startswith("error: refused")
    assert [r.url.host for r in net.requests] == ["10.0.0.5", "10.9.0.1", "10.0.0.77"]


async def test_unresolvable_names_are_reported() -> None:
    async def fail(host: str, port: int) -> list[Address]:
        from extensions.tools.base import ToolError

        raise ToolError(f"cannot resolve {host}: Name or service not known")

    net = Net()
    net.resolve = fail  # type: ignore[method-assign]
    text = await net.fetch({"url": "http://nowhere.invalid/"})
    assert text == "error: cannot resolve nowhere.invalid: Name or service not known"


def test_definition_is_an_openai_function_tool() -> None:
    definition = WebFetchTool(WebFetchConfig()).definition()
    assert definition["type"] == "function"
    assert definition["function"]["name"] == "web_fetch"
    assert definition["function"]["parameters"]["required"] == ["url"]


def test_html_to_text_keeps_structure_and_drops_chrome() -> None:
    title, text = html_to_text(
        b"<html><head><title> A \n title</title><script>x()</script></head><body>"
        b"<nav>menu</nav><h2>Part</h2><p>One <a href='#'>link</a>\n two.</p>"
        b"<pre>  indented\n    more</pre><div hidden>secret</div><!-- note -->"
        b"<table><tr><td>a</td><td>b</td></tr></table><p>x<br>y</p></body></html>",
        "utf-8",
    )
    assert title == "A title"
    assert text == "## Part\n\nOne link two.\n\n  indented\n    more\n\na | b\n\nx\ny"
