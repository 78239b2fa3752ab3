"""ComfyUI's HTTP and websocket API: upload, submit, follow, download, cancel.

HTTP goes through the app's shared httpx client, with transport failures mapped as
for every upstream. The websocket is opened before the prompt is submitted (with the
same ``client_id``), so no message can be missed; when it cannot be opened, or drops
mid-job, ``/history/{prompt_id}`` is polled instead. The whole run is bounded by one
deadline; past it the prompt is removed from ComfyUI's queue (or interrupted) and the
caller gets ``UpstreamTimeout``.
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
from adapters.transport import mapped_transport_errors
from proxy.errors import PayloadTooLarge, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from proxy.media.store import MediaStore, StoredMedia

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
    ) -> None:
        self.base = base_url.rstrip("/")
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
        request = self.http.build_request(
            method, self.base + path, headers=self.headers, timeout=self.timeout, **kw
        )
        with mapped_transport_errors(self.model):
            response = await self.http.send(request)
            await response.aread()
        return response

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

    async def submit(self, workflow: dict[str, Any], client_id: str) -> str:
        response = await self._request(
            "POST", "/prompt", json={"prompt": workflow, "client_id": client_id}
        )
        if response.status_code == 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:500]}
            raise rejected(body, self.model)
        if response.status_code != 200:
            raise self._fail(response, "/prompt")
        body = response.json()
        if body.get("node_errors"):
            raise rejected(body, self.model)
        return str(body["prompt_id"])

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"/history/{prompt_id}")
        if response.status_code != 200:
            raise self._fail(response, "/history")
        entry = response.json().get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def cancel(self, prompt_id: str) -> None:
        """Best effort: drop the prompt from the queue, or interrupt it if it is running."""
        with contextlib.suppress(Exception):
            await self._request("POST", "/queue", json={"delete": [prompt_id]})
            await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    # -- a whole run ------------------------------------------------------------------

    async def run(
        self,
        workflow: dict[str, Any],
        *,
        timeout_s: float,
        outputs: tuple[str, ...] = (),
        on_progress: Callable[[int], None] | None = None,
        on_accepted: Callable[[], None] | None = None,
    ) -> list[OutputFile]:
        """Submit ``workflow`` and wait for it; the files it saved.

        ``on_accepted`` is called once ComfyUI has validated and queued the prompt.
        """
        client_id = uuid.uuid4().hex
        tracker = Tracker(self.model, len(workflow), on_progress)
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                ws = await self._open_ws(client_id) if self.websocket else None
                try:
                    tracker.prompt_id = prompt_id = await self.submit(workflow, client_id)
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
            "GET", self.base + "/view", params=params, headers=self.headers, timeout=self.timeout
        )

    @contextlib.asynccontextmanager
    async def _viewing(self, ref: OutputFile) -> AsyncIterator[httpx.Response]:
        """An output file's response, open for streaming; closed when the block ends."""
        with mapped_transport_errors(self.model):
            response = await self.http.send(self._view(ref), stream=True)
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
        self, ref: OutputFile, store: MediaStore, *, max_bytes: int
    ) -> StoredMedia:
        """Stream an output (a video) straight into the media store."""
        async with self._viewing(ref) as response:
            return await store.save_stream(
                response.aiter_bytes(), ref.content_type, max_bytes=max_bytes
            )
