"""ComfyUI's HTTP and websocket API: upload, submit, follow, download, cancel.

HTTP goes through the app's shared httpx client, with transport failures mapped as
for every upstream; every exchange is reported to the server's shared health. The
websocket is opened before the prompt is submitted (with the same ``client_id``), so
no message can be missed; the prompt is finished when ComfyUI's last message for it
arrives (``executing`` with ``node: null``, sent once the history is written), and the
history is then read once. When the websocket cannot be opened, or drops mid-job,
``/history/{prompt_id}`` is polled instead. The prompt id is chosen here and sent with
the prompt (ComfyUI takes a client's ``prompt_id``), so a run stopped at any point,
even while submitting, can be cancelled: past the deadline, or when the caller is
cancelled (its client went away), a queued prompt is deleted from the queue and a
running one interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx

from adapters.comfyui.events import OutputFile, Tracker, history_outputs, history_state, rejected
from adapters.comfyui.health import ServerHealth
from adapters.transport import mapped_transport_errors
from proxy.errors import PayloadTooLarge, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from proxy.media.store import MediaStore, StoredMedia
from proxy.telemetry import span, upstream_headers

log = logging.getLogger("switchyard.comfyui")

UPLOAD_SUBFOLDER = "switchyard"


class ComfyClient:
    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        model: str,
        timeout: httpx.Timeout,
        headers: dict[str, str],
        poll_interval_s: float,
        websocket: bool,
        health: ServerHealth | None = None,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.health = health if health is not None else ServerHealth(self.base)
        self.http = http
        self.model = model
        self.timeout = timeout
        self.headers = headers
        self.poll_interval_s = poll_interval_s
        self.websocket = websocket
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- plain HTTP -------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            with span("upstream", model=self.model) as traced, mapped_transport_errors(self.model):
                request = self.http.build_request(
                    method,
                    self.base + path,
                    headers=upstream_headers(self.headers),
                    timeout=self.timeout,
                    **kw,
                )
                response = await self.http.send(request)
                traced.set("http.response.status_code", response.status_code)
                await response.aread()
        except UpstreamError as error:
            self.health.failed(f"ComfyUI at {self.base} is not answering: {error.message}")
            raise
        self._answered(response, path)
        return response

    def _answered(self, response: httpx.Response, path: str) -> None:
        if response.status_code >= 500:
            status = response.status_code
            self.health.failed(f"ComfyUI at {self.base} answered {status} to {path}")
        else:
            self.health.succeeded()

    def _fail(self, response: httpx.Response, what: str) -> UpstreamError:
        text = response.text.strip()[:500] or f"HTTP {response.status_code}"
        return UpstreamError(f"ComfyUI answered {response.status_code} to {what}: {text}")

    async def probe(self) -> None:
        response = await self._request("GET", "/system_stats")
        if response.status_code != 200:
            raise self._fail(response, "/system_stats")

    async def upload_image(self, data: bytes, extension: str) -> str:
        """Upload an input image under a fresh name; returns the name ``LoadImage`` takes."""
        name = f"switchyard-{secrets.token_hex(8)}.{extension}"
        response = await self._request(
            "POST",
            "/upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"type": "input", "subfolder": UPLOAD_SUBFOLDER, "overwrite": "true"},
        )
        if response.status_code != 200:
            raise self._fail(response, "/upload/image")
        body = response.json()
        subfolder = body.get("subfolder") or ""
        return f"{subfolder}/{body['name']}" if subfolder else str(body["name"])

    async def submit(
        self,
        workflow: dict[str, Any],
        client_id: str,
        prompt_id: str,
        request_inputs: frozenset[tuple[str, str]] = frozenset(),
    ) -> str:
        """Queue ``workflow`` as ``prompt_id``; the id ComfyUI uses (servers older than
        client-chosen ids answer with their own). ``request_inputs`` are the ``(node,
        input)`` pairs the request filled, for telling its mistakes from the server's."""
        body = {"prompt": workflow, "client_id": client_id, "prompt_id": prompt_id}
        response = await self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                answer = response.json()
            except ValueError:
                answer = {"error": response.text[:500]}
            raise rejected(answer, self.model, request_inputs)
        if response.status_code != 200:
            raise self._fail(response, "/prompt")
        answer = response.json()
        if answer.get("node_errors"):
            raise rejected(answer, self.model, request_inputs)
        return str(answer["prompt_id"])

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/history/{prompt_id}")
        if response.status_code != 200:
            raise self._fail(response, "/history")
        entry = response.json().get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def _queue_place(self, prompt_id: str) -> str | None:
        """``"running"``, ``"pending"`` or None (finished, or never queued), from
        ``GET /queue``: items are ``[number, prompt_id, prompt, extra_data, outputs]``."""
        response = await self._request("GET", "/queue")
        if response.status_code != 200:
            raise self._fail(response, "/queue")
        body = response.json()
        for place in ("running", "pending"):
            for item in body.get(f"queue_{place}") or ():
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return place
        return None

    async def cancel(self, prompt_id: str) -> None:
        """Best effort: delete the prompt from the queue while it waits there, interrupt
        it if it runs. ``/interrupt`` is only sent once the queue shows the prompt
        running, since servers before targeted interrupts stop whatever runs."""
        with contextlib.suppress(UpstreamError, ValueError):
            place = await self._queue_place(prompt_id)
            if place == "pending":
                await self._request("POST", "/queue", json={"delete": [prompt_id]})
                place = await self._queue_place(prompt_id)  # it may have started meanwhile
            if place == "running":
                await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    # -- a whole run ------------------------------------------------------------------

    async def run(
        self,
        workflow: dict[str, Any],
        *,
        timeout_s: float,
        outputs: tuple[str, ...] = (),
        request_inputs: frozenset[tuple[str, str]] = frozenset(),
        on_progress: Callable[[int], None] | None = None,
        on_accepted: Callable[[], None] | None = None,
    ) -> list[OutputFile]:
        """Submit ``workflow`` and wait for it; the files it saved.

        ``on_accepted`` is called once ComfyUI has validated and queued the prompt.
        """
        client_id = uuid.uuid4().hex
        tracker = Tracker(self.model, len(workflow), on_progress, prompt_id=str(uuid.uuid4()))
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                ws = await self._open_ws(client_id) if self.websocket else None
                try:
                    chosen = str(tracker.prompt_id)
                    prompt_id = await self.submit(workflow, client_id, chosen, request_inputs)
                    tracker.prompt_id = prompt_id
                    if on_accepted is not None:
                        on_accepted()
                    followed = ws is not None and await self._follow(ws, tracker)
                finally:
                    if ws is not None:
                        await ws.close()
                dropped = ws is not None and not followed
                entry = await self._wait_history(prompt_id, dropped=dropped)
        except TimeoutError:
            if not deadline.expired():
                raise
            if tracker.prompt_id is not None:
                await self.cancel(tracker.prompt_id)
            raise UpstreamTimeout(
                f"ComfyUI did not finish the workflow for '{self.model}' within {timeout_s:g}s."
            ) from None
        except asyncio.CancelledError:
            if tracker.prompt_id is not None:
                await asyncio.shield(self.cancel(tracker.prompt_id))
            raise
        return history_outputs(entry, outputs)

    async def _open_ws(self, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers, cookie_jar=aiohttp.DummyCookieJar()
            )
        url = self.base.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        try:
            return await self._session.ws_connect(
                url,
                headers=upstream_headers({}),
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
                max_msg_size=64 * 1024 * 1024,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("ComfyUI websocket for %s unavailable (%s); polling", self.model, exc)
            return None

    async def _follow(self, ws: aiohttp.ClientWebSocketResponse, tracker: Tracker) -> bool:
        """Read messages until the prompt finished (True) or the socket closed (False)."""
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary frames are previews
            try:
                decoded = json.loads(message.data)
            except ValueError:
                continue
            if tracker.feed(decoded):
                return True
        return False

    async def _wait_history(self, prompt_id: str, *, dropped: bool) -> dict[str, Any]:
        while True:
            try:
                entry = await self.history(prompt_id)
            except UpstreamUnavailable:
                if dropped:
                    raise UpstreamUnavailable(
                        f"ComfyUI for '{self.model}' went away while running the workflow."
                    ) from None
                raise
            if entry is not None and history_state(entry, self.model):
                return entry
            await asyncio.sleep(self.poll_interval_s)

    # -- outputs ----------------------------------------------------------------------

    def _view(self, ref: OutputFile) -> httpx.Request:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        return self.http.build_request(
            "GET",
            self.base + "/view",
            params=params,
            headers=upstream_headers(self.headers),
            timeout=self.timeout,
        )

    @contextlib.asynccontextmanager
    async def _viewing(self, ref: OutputFile) -> AsyncIterator[httpx.Response]:
        """An output file's response, open for streaming; closed when the block ends."""
        try:
            with mapped_transport_errors(self.model):
                response = await self.http.send(self._view(ref), stream=True)
        except UpstreamError as error:
            self.health.failed(f"ComfyUI at {self.base} is not answering: {error.message}")
            raise
        self._answered(response, "/view")
        with mapped_transport_errors(self.model):
            try:
                if response.status_code != 200:
                    await response.aread()
                    raise self._fail(response, f"/view {ref.filename}")
                yield response
            finally:
                await response.aclose()

    async def download(self, ref: OutputFile, *, max_bytes: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async with self._viewing(ref) as response:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"ComfyUI output {ref.filename} is too large.")
                chunks.append(chunk)
        return b"".join(chunks)

    async def download_to(
        self, ref: OutputFile, store: MediaStore, *, max_bytes: int, owner: str
    ) -> StoredMedia:
        """Stream an output (a video) straight into the media store, for team ``owner``."""
        async with self._viewing(ref) as response:
            return await store.save_stream(
                response.aiter_bytes(), ref.content_type, max_bytes=max_bytes, owner=owner
            )
