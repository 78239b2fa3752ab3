"""A protocol-faithful ComfyUI test double, served for real on a free port.

ComfyUI's server is an aiohttp app; so is this one, speaking the same HTTP and
websocket protocol (from ComfyUI's ``server.py``, ``execution.py`` and ``main.py``):

- ``POST /upload/image`` (multipart ``image``, ``subfolder``, ``type``, ``overwrite``)
  answers ``{"name", "subfolder", "type"}``.
- ``POST /prompt`` ``{"prompt", "client_id", "prompt_id"?}`` validates like ComfyUI
  (unknown node types, no output node, values not in a model list with ``extra_info``,
  missing input images) and answers ``{"prompt_id", "number", "node_errors": {}}`` or
  400 with ``error`` and ``node_errors``. A client's ``prompt_id`` is used as given.
  Prompts run one at a time from a queue.
- ``/ws?clientId=`` gets ``status``, then per prompt ``execution_start``,
  ``execution_cached``, ``executing`` per node, ``progress`` while a sampler runs,
  ``executed`` with the node's files, then ``execution_success`` (or
  ``execution_error``, ``execution_interrupted``). Those come from the executor; the
  history is written after them (``history_delay_s`` later: ComfyUI's prompt worker
  writes it once the executor has returned), and only then ``executing`` with
  ``node: null`` is sent, the last message of every prompt.
- ``GET /history/{prompt_id}`` is ``{}`` until then; afterwards the outputs and a
  status whose ``messages`` are the executor's messages.
- ``GET /queue`` lists ``queue_running`` and ``queue_pending`` as
  ``[number, prompt_id, prompt, extra_data, outputs]``; ``POST /queue {"delete": [id]}``
  removes waiting prompts; ``POST /interrupt`` stops the running prompt (with
  ``{"prompt_id"}``: only if that one is running). Both answer an empty 200.
- ``GET /view?filename=&subfolder=&type=`` serves the files; ``/system_stats`` too.

The save nodes embed the prompt as ComfyUI does: SaveImage in a ``prompt`` tEXt chunk,
SaveAnimatedPNG in private ``comf`` chunks after the image data, SaveAnimatedWEBP in
EXIF (``extra_pnginfo`` entries, such as the UI's ``workflow``, beside it).

Fault modes (``fake.mode``): ``upload_error`` (``/upload/image`` answers 500),
``execution_error`` (the sampler raises out-of-memory),
``vanish`` (mid-sampling the server closes every socket and stops listening),
``hang`` (the sampler never finishes until interrupted). ``fake.websocket = False``
answers ``/ws`` with 404, as a proxy that does not pass websockets would.
``fake.set_cookie`` adds that ``Set-Cookie`` header to every answer; the ``Cookie``
header of every request is recorded in ``fake.cookies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import mimetypes
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from tests.support.fake_comfyui_nodes import (
    MODEL_LISTS,
    NODES,
    OUTPUT_NODES,
    Context,
    Saved,
    is_link,
    validate_prompt,
)
from tests.support.servers import free_port

ERROR_MESSAGE = "Allocation on device 0 would exceed allowed memory. (out of memory)"


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeComfyUI:
    def __init__(
        self, *, step_delay: float = 0.005, max_steps: int = 4, history_delay_s: float = 0.05
    ) -> None:
        self.step_delay = step_delay
        self.max_steps = max_steps
        self.history_delay_s = history_delay_s
        self.mode = "ok"
        self.websocket = True
        self.set_cookie: str | None = None
        self.uploads: dict[str, bytes] = {}
        #: Loader input -> the model files this server "has installed".
        self.models = {name: list(files) for name, files in MODEL_LISTS.items()}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.prompts: list[dict[str, Any]] = []
        self.prompt_ids: list[str] = []
        #: Prompts removed from the queue by ``POST /queue`` delete, and stopped by
        #: ``POST /interrupt``, in order.
        self.deleted: list[str] = []
        self.interrupted: list[str] = []
        self.history_reads: list[str] = []
        self.cookies: list[tuple[str, str | None]] = []
        self.running: list[Any] | None = None
        self.pending: dict[str, list[Any]] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._queue: asyncio.Queue[str] | None = None
        self._interrupt = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._number = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.context = Context(self.uploads)

    def reset(self) -> None:
        self.mode, self.websocket, self.set_cookie = "ok", True, None
        for recorded in (self.prompts, self.prompt_ids, self.deleted, self.interrupted):
            recorded.clear()
        self.history_reads.clear()
        self.cookies.clear()

    # -- lifecycle ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._cookies])
        app.router.add_get("/ws", self.ws)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/history/{prompt_id}", self.get_history)
        app.router.add_get("/view", self.view)
        app.router.add_post("/upload/image", self.upload)
        app.router.add_get("/system_stats", self.system_stats)
        app.router.add_get("/queue", self.get_queue)
        app.router.add_post("/queue", self.queue_op)
        app.router.add_post("/interrupt", self.interrupt)
        return app

    @web.middleware
    async def _cookies(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.cookies.append((request.path, request.headers.get("Cookie")))
        response = await handler(request)
        if self.set_cookie is not None and not response.prepared:
            response.headers["Set-Cookie"] = self.set_cookie
        return response  # type: ignore[no-any-return]

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._interrupt.set()
        await self._close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _close_sockets(self) -> None:
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                await ws.close()

    # -- HTTP -------------------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"system": {"os": "posix", "comfyui_version": "fake"}, "devices": []}
        )

    async def upload(self, request: web.Request) -> web.Response:
        if self.mode == "upload_error":
            return web.Response(status=500, text="500 Internal Server Error")
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        subfolder = str(form.get("subfolder", ""))
        key = f"{subfolder}/{image.filename}" if subfolder else image.filename
        self.uploads[key] = image.file.read()
        return web.json_response(
            {"name": image.filename, "subfolder": subfolder, "type": form.get("type", "input")}
        )

    async def view(self, request: web.Request) -> web.Response:
        q = request.query
        key = (q.get("type", "output"), q.get("subfolder", ""), q.get("filename", ""))
        data = self.files.get(key)
        if data is None:
            return web.Response(status=404)
        ctype = mimetypes.guess_type(key[2])[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype)

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        self.history_reads.append(prompt_id)
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [self.running] if self.running is not None else []
        return web.json_response(
            {"queue_running": running, "queue_pending": list(self.pending.values())}
        )

    async def queue_op(self, request: web.Request) -> web.Response:
        body = await request.json()
        for prompt_id in body.get("delete", []):
            if self.pending.pop(prompt_id, None) is not None:
                self.deleted.append(prompt_id)
        return web.Response(status=200)

    async def interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        wanted = body.get("prompt_id")
        running = self.running[1] if self.running is not None else None
        if running is not None and wanted in (None, running):
            self.interrupted.append(running)
            self._interrupt.set()
        return web.Response(status=200)

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        workflow = body.get("prompt")
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        problem = validate_prompt(workflow, self.uploads, self.models)
        if problem is not None:
            return web.json_response(problem, status=400)
        self._number += 1
        self.prompts.append(workflow)
        self.prompt_ids.append(prompt_id)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        outputs = [n for n, node in workflow.items() if node["class_type"] in OUTPUT_NODES]
        self.pending[prompt_id] = [self._number, prompt_id, workflow, extra, outputs]
        assert self._queue is not None
        await self._queue.put(prompt_id)
        return web.json_response(
            {"prompt_id": prompt_id, "number": self._number, "node_errors": {}}
        )

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if not self.websocket:
            return web.Response(status=404)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
        if self.set_cookie is not None:  # on the handshake, before it is sent
            ws.headers["Set-Cookie"] = self.set_cookie
        await ws.prepare(request)
        self._sockets.setdefault(client_id, set()).add(ws)
        try:
            status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}
            await ws.send_str(json.dumps({"type": "status", "data": status}))
            async for _ in ws:
                pass
        finally:
            self._sockets[client_id].discard(ws)
        return ws

    # -- execution ----------------------------------------------------------------------

    async def _send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        for ws in list(self._sockets.get(client_id, ())):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def _work(self) -> None:
        """ComfyUI's ``prompt_worker``: run the executor, write the history, then say
        ``executing: null``."""
        assert self._queue is not None
        while True:
            prompt_id = await self._queue.get()
            item = self.pending.pop(prompt_id, None)
            if item is None:
                continue  # deleted while it waited
            self.running = item
            number, _, workflow, extra, outputs = item
            client_id = str(extra.get("client_id") or "")
            self._interrupt.clear()
            try:
                messages, results, status = await self._execute(prompt_id, workflow, extra)
                await asyncio.sleep(self.history_delay_s)
                self.history[prompt_id] = {
                    "prompt": [number, prompt_id, workflow, extra, outputs],
                    "outputs": results,
                    "status": {
                        "status_str": status,
                        "completed": status == "success",
                        "messages": messages,
                    },
                    "meta": {},
                }
            finally:
                self.running = None
            await self._send(client_id, "executing", {"node": None, "prompt_id": prompt_id})

    @staticmethod
    def _order(workflow: dict[str, Any]) -> list[str]:
        done: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in done:
                return
            for value in workflow[node_id]["inputs"].values():
                if is_link(value):
                    visit(str(value[0]))
            done.append(node_id)

        for node_id in workflow:
            visit(node_id)
        return done

    async def _execute(
        self, prompt_id: str, workflow: dict[str, Any], extra: dict[str, Any]
    ) -> tuple[list[list[Any]], dict[str, Any], str]:
        """ComfyUI's ``PromptExecutor.execute``: the executor's messages (those the
        history keeps), the outputs, and the status."""
        client_id = str(extra.get("client_id") or "")
        messages: list[list[Any]] = []

        async def send(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": prompt_id}
            await self._send(client_id, kind, data)

        async def add_message(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": prompt_id, "timestamp": _now_ms()}
            messages.append([kind, data])
            await self._send(client_id, kind, data)

        self.context.prompt, self.context.extra_pnginfo = workflow, extra.get("extra_pnginfo")
        await add_message("execution_start", {})
        await add_message("execution_cached", {"nodes": []})
        results: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for node_id in self._order(workflow):
            node = workflow[node_id]
            await send("executing", {"node": node_id, "display_node": node_id})
            inputs = {
                name: results[str(v[0])][v[1]] if is_link(v) else v
                for name, v in node["inputs"].items()
            }
            if "steps" in inputs and not await self._sample(node_id, inputs, send):
                if self._interrupt.is_set():
                    executed = {"node_id": node_id, "node_type": node["class_type"]}
                    await add_message("execution_interrupted", {**executed, "executed": []})
                if self.mode == "execution_error":
                    await add_message(
                        "execution_error",
                        {
                            "node_id": node_id,
                            "node_type": node["class_type"],
                            "executed": list(results),
                            "exception_message": ERROR_MESSAGE,
                            "exception_type": "torch.OutOfMemoryError",
                            "traceback": [],
                            "current_inputs": {},
                            "current_outputs": {},
                        },
                    )
                return messages, {}, "error"
            result = await asyncio.to_thread(NODES[node["class_type"]], self.context, **inputs)
            if isinstance(result, Saved):
                for folder, name, data in result.files:
                    self.files[("output", folder, name)] = data
                outputs[node_id] = result.ui
                await send(
                    "executed", {"node": node_id, "display_node": node_id, "output": result.ui}
                )
                result = ()
            results[node_id] = result
        await add_message("execution_success", {})
        return messages, outputs, "success"

    async def _sample(self, node_id: str, inputs: dict[str, Any], send: Any) -> bool:
        """Report sampler progress; False when the run ends here (a fault mode)."""
        steps = min(int(inputs["steps"]), self.max_steps)
        for step in range(1, steps + 1):
            if self._interrupt.is_set():  # the sampler checks before each step, as ComfyUI's
                return False
            if self.mode == "execution_error":
                return False
            if self.mode == "vanish" and step == 2:
                await self._vanish()
                return False
            if self.mode == "hang" and step == 2:
                await self._interrupt.wait()
                return False
            await send("progress", {"value": step, "max": steps, "node": node_id})
            await asyncio.sleep(self.step_delay)
        return True

    async def _vanish(self) -> None:
        """Go away as a crashed server does: sockets closed, nothing listening."""
        await self._close_sockets()
        if self._runner is not None:
            asyncio.get_running_loop().create_task(self._runner.cleanup())
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def serve_comfyui(**options: Any) -> Iterator[FakeComfyUI]:
    """Run a ``FakeComfyUI`` on its own event loop in a thread until the block ends."""
    fake = FakeComfyUI(**options)
    loop = asyncio.new_event_loop()
    fake.loop = loop
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    thread = threading.Thread(target=run, name=f"fake-comfyui-{fake.port}", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise TimeoutError("fake ComfyUI did not start")
    try:
        yield fake
    finally:
        stop = asyncio.run_coroutine_threadsafe(fake.stop(), loop)
        with contextlib.suppress(Exception):
            stop.result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "comfyui"


def comfy_model(name: str, url: str, workflows: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A ``comfyui`` model entry using the shipped specs in deploy/comfyui by file name."""
    return {
        "name": name,
        "adapter": "comfyui",
        "base_url": url,
        "timeout_s": 20,
        "poll_interval_s": 0.05,
        "workflows": {
            kind: str(DEPLOY / spec) if isinstance(spec, str) else spec
            for kind, spec in workflows.items()
        },
        **options,
    }


def png_bytes(size: tuple[int, int], color: tuple[int, ...], mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()
