"""One MCP server's connection, shared by every request of the process.

- **Lazy.** Nothing starts with the gateway: the first request that names one of the
  server's tools connects (spawns the ``command``, or opens the streamable HTTP
  session), and lists its tools.
- **One session per server per process**, and one attempt at a time: concurrent
  requests wait for the one connection being made (one task of its own, so a request
  that goes away leaves it to the others), then share it (MCP requests are
  multiplexed). When the attempt fails, every request waiting for it gets its failure
  at once; none starts an attempt of its own.
- **Backed off.** A failed start is remembered for ``start_backoff_s``: requests then
  fail at once with the same error, and the first one after it tries again (so a
  server that comes back is used again). A dead server never makes requests queue.
- **Owned by a task of its own.** The SDK's ``Client`` is an async context whose task
  group must be left by the task that entered it, so a background task enters it,
  hands the client over, and holds it open until the connection is closed or breaks.
- **Restarted after a crash.** A stdio server that died, or an HTTP server that went
  away, shows as ``CONNECTION_CLOSED`` (a 404 for a session the server no longer
  knows as ``INVALID_REQUEST``): the connection is dropped, made again, and the
  request sent once more, once. (A server that died *during* a call may therefore
  see that call twice.)
- **Bounded.** Starting (spawn, handshake) waits at most ``start_timeout_s``, and
  every request ``timeout_s`` (the SDK's request timeout, which also tells the server the request
  was cancelled); a failure becomes ``ToolError``, which the tool loop hands the model
  as ``error: ...``.
- **Listing** is cached for the life of the connection: made again after a reconnect,
  and dropped when the server sends ``notifications/tools/list_changed`` (servers
  speaking the 2025 protocol send it unasked; 2026 servers only to a client that
  subscribed, which this one does not, so their listing changes show after a
  reconnect).
- **Closed** by ``aclose`` (the tools extension's, at shutdown or when a reload
  retires it): stdin is closed, then the SDK terminates the process group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from extensions.tools.base import ToolError
from extensions.tools.mcp.config import McpServerConfig

log = logging.getLogger("switchyard.tools.mcp")

#: Errors that mean the connection, not the request, is broken: reconnect and resend.
BROKEN = frozenset({mcp_types.CONNECTION_CLOSED, mcp_types.INVALID_REQUEST})
_MAX_PAGES = 50
_CLOSE_WAIT_S = 10.0
CLIENT_INFO = mcp_types.Implementation(name="switchyard", version="1")

T = TypeVar("T")


def describe(exc: BaseException) -> str:
    """One line naming what went wrong (the first leaf of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return str(exc) or "protocol error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Live:
    """A connected client and the task holding it open."""

    def __init__(self, client: Client, task: asyncio.Task[None], scope: anyio.CancelScope) -> None:
        self.client = client
        self.task = task
        self.scope = scope

    @property
    def alive(self) -> bool:
        return not self.task.done()


class McpConnection:
    def __init__(
        self, config: McpServerConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._live: _Live | None = None
        #: The connection being made, awaited by every request that needs it.
        self._attempt: asyncio.Task[_Live] | None = None
        #: The last failed start: its error, and until when (``clock``) it stands.
        self._failed: tuple[str, float] | None = None
        self._tools: list[mcp_types.Tool] | None = None
        self._owners: set[asyncio.Task[None]] = set()
        self._closed = False
        self.in_flight = 0

    # -- what the tools call -------------------------------------------------------

    async def list_tools(self) -> list[mcp_types.Tool]:
        """The server's tools (every page), cached until the connection changes."""
        if self._tools is not None and self._live is not None and self._live.alive:
            return self._tools

        async def listing(client: Client) -> list[mcp_types.Tool]:
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(_MAX_PAGES):
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        tools = await self._request(listing, "listing its tools")
        self._tools = tools
        return tools

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        async def call(client: Client) -> mcp_types.CallToolResult:
            return await client.call_tool(tool, arguments)

        return await self._request(call, f"calling '{tool}'")

    def busy(self) -> bool:
        return self.in_flight > 0

    async def aclose(self) -> None:
        """Close the connection (the stdio server exits) and wait for it to end."""
        self._closed = True
        if self._attempt is not None:
            self._attempt.cancel()
        if self._live is not None:
            self._live.scope.cancel()
            self._live = None
        owners = set(self._owners)
        if owners:
            _, pending = await asyncio.wait(owners, timeout=_CLOSE_WAIT_S)
            for task in pending:
                log.warning("MCP server %s did not close in %ss", self.name, _CLOSE_WAIT_S)
                task.cancel()

    # -- the plumbing --------------------------------------------------------------

    async def _request(self, send: Callable[[Client], Awaitable[T]], what: str) -> T:
        """``send`` on the live client; once more on a new one if the connection broke."""
        self.in_flight += 1
        try:
            for attempt in (1, 2):
                live = await self._connected()
                try:
                    return await send(live.client)
                except MCPError as exc:
                    if exc.code == mcp_types.REQUEST_TIMEOUT:
                        raise ToolError(
                            f"MCP server '{self.name}' did not answer within "
                            f"{self.config.timeout_s:g}s ({what})"
                        ) from None
                    if exc.code in BROKEN and attempt == 1:
                        log.info(
                            "MCP server %s: connection broken (%s); reconnecting", self.name, exc
                        )
                        self._drop(live)
                        continue
                    raise ToolError(f"MCP server '{self.name}' failed {what}: {exc}") from None
                except ToolError:
                    raise
                except Exception as exc:  # a malformed answer, a transport failure
                    log.warning("MCP server %s failed %s", self.name, what, exc_info=True)
                    raise ToolError(
                        f"MCP server '{self.name}' failed {what}: {describe(exc)}"
                    ) from None
            raise AssertionError("unreachable")
        finally:
            self.in_flight -= 1

    async def _connected(self) -> _Live:
        """The live client: the one there is, or the attempt under way, or a new one.

        Up to the ``await`` nothing yields, so no lock is needed: the first request
        that finds no connection starts the attempt, and the others find it."""
        if self._closed:
            raise ToolError(f"MCP server '{self.name}' is shutting down")
        live = self._live
        if live is not None and live.alive:
            return live
        if live is not None:
            self._drop(live)
        attempt = self._attempt
        if attempt is None:
            if self._failed is not None:
                error, until = self._failed
                if self._clock() < until:
                    raise ToolError(error)
                self._failed = None
            attempt = asyncio.get_running_loop().create_task(
                self._attempt_connect(), name=f"mcp-connect:{self.name}"
            )
            attempt.add_done_callback(_retrieve)
            self._attempt = attempt
        try:
            # Shielded: one request going away (its client hung up, its tool call timed
            # out) does not cancel the attempt the others wait for; it ends by itself
            # within start_timeout_s, and a connection it makes is kept.
            return await asyncio.shield(attempt)
        except ToolError as exc:
            raise ToolError(str(exc)) from None  # each waiter its own, not one shared
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if attempt.cancelled() and self._closed and task is not None and not task.cancelling():
                raise ToolError(f"MCP server '{self.name}' is shutting down") from None
            raise  # this request was cancelled

    async def _attempt_connect(self) -> _Live:
        """One attempt, shared by every request waiting; its failure is remembered."""
        try:
            try:
                live = await self._connect()
            except asyncio.CancelledError:
                if self._closed:  # aclose: the waiters get an error, not a cancellation
                    raise ToolError(f"MCP server '{self.name}' is shutting down") from None
                raise
            except ToolError as exc:
                self._remember(str(exc))
                raise
            except Exception as exc:  # not expected from _connect; still the waiters' error
                error = f"MCP server '{self.name}' could not be started: {describe(exc)}"
                self._remember(error)
                raise ToolError(error) from None
            if self._closed:
                live.scope.cancel()
                raise ToolError(f"MCP server '{self.name}' is shutting down")
            self._live = live
            self._tools = None
            self._failed = None
            return live
        finally:
            self._attempt = None

    def _remember(self, error: str) -> None:
        backoff = self.config.start_backoff_s
        if backoff > 0:
            self._failed = (error, self._clock() + backoff)
            log.info("MCP server %s: %s; not trying again for %gs", self.name, error, backoff)

    def _drop(self, live: _Live) -> None:
        live.scope.cancel()
        if self._live is live:
            self._live = None
            self._tools = None

    async def _connect(self) -> _Live:
        """Start the server and make the handshake, within ``start_timeout_s``."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        scope = anyio.CancelScope()
        task = loop.create_task(self._own(ready, scope), name=f"mcp:{self.name}")
        self._owners.add(task)
        task.add_done_callback(self._owners.discard)
        try:
            done, _ = await asyncio.wait({ready}, timeout=self.config.start_timeout_s)
        except BaseException:  # cancelled (aclose): do not leave a half-made connection
            ready.cancel()
            scope.cancel()
            raise
        if not done:
            ready.cancel()
            scope.cancel()
            raise ToolError(
                f"MCP server '{self.name}' did not start within {self.config.start_timeout_s:g}s"
            )
        try:
            client = ready.result()
        except Exception as exc:
            verb = "be reached" if self.config.url else "be started"
            raise ToolError(f"MCP server '{self.name}' could not {verb}: {describe(exc)}") from None
        return _Live(client, task, scope)

    async def _own(self, ready: asyncio.Future[Client], scope: anyio.CancelScope) -> None:
        """Enter the client, hand it over, and hold it until cancelled or broken."""
        try:
            with scope:
                async with self._client() as client:
                    if ready.done():  # the caller gave up meanwhile
                        return
                    ready.set_result(client)
                    await anyio.sleep_forever()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.info("MCP server %s: connection ended: %s", self.name, describe(exc))

    def _client(self) -> Client:
        config = self.config
        target: str | StdioServerParameters
        if config.url is not None:
            target = config.url
        else:
            argv = config.argv
            target = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(config.env))
        return Client(
            target,
            cache=None,
            read_timeout_seconds=config.timeout_s,
            message_handler=self._on_message,
            client_info=CLIENT_INFO,
        )

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._tools = None
        elif isinstance(message, Exception):
            log.debug("MCP server %s: %s", self.name, describe(message))


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an attempt's failure as seen: every waiter may have gone away before it."""
    if not task.cancelled():
        task.exception()
