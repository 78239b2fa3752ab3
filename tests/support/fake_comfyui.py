"""A protocol-faithful ComfyUI test double, served for real on a free port.

ComfyUI's server is an aiohttp app; so is this one, speaking the same HTTP and
websocket protocol (from ComfyUI's ``server.py``, ``execution.py`` and ``main.py``):

- ``POST /upload/image`` (multipart ``image``, ``subfolder``, ``type``, ``overwrite``)
  answers ``{"name", "subfolder", "type"}``.
- ``POST /prompt`` ``{"prompt", "client_id"}`` validates like ComfyUI (unknown node
  types, no output node, values not in a model list, missing input images) and
  answers ``{"prompt_id", "number", "node_errors": {}}`` or 400 with ``error`` and
  ``node_errors``. Prompts run one at a time from a queue.
- ``/ws?clientId=`` gets ``status``, then per prompt ``execution_start``,
  ``execution_cached``, ``executing`` per node, ``progress`` while a sampler runs,
  ``executed`` with the node's files, ``executing`` with ``node: null``,
  ``execution_success``; or ``execution_error``.
- ``GET /history/{prompt_id}`` is ``{}`` until the prompt ran, then its outputs and status.
- ``GET /view?filename=&subfolder=&type=`` serves the files; ``/system_stats``,
  ``POST /queue`` (delete) and ``POST /interrupt`` exist too.

Fault modes (``fake.mode``): ``execution_error`` (the sampler raises out-of-memory),
``vanish`` (mid-sampling the server closes every socket and stops listening),
``hang`` (the sampler never finishes until interrupted). ``fake.websocket = False``
answers ``/ws`` with 404, as a proxy that does not pass websockets would.
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

from tests.support.fake_comfyui_nodes import NODES, Context, Saved, is_link, validate_prompt
from tests.support.servers import free_port

ERROR_MESSAGE = "Allocation on device 0 would exceed allowed memory. (out of memory)"


def _now_ms() -> int:
    return int(time.time() * 1000)


class FakeComfyUI:
    def __init__(self, *, step_delay: float = 0.005, max_steps: int = 4) -> None:
        self.step_delay = step_delay
        self.max_steps = max_steps
        self.mode = "ok"
        self.websocket = True
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.prompts: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], str]] | None = None
        self._interrupts: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._number = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.context = Context(self.uploads)

    def reset(self) -> None:
        self.mode, self.websocket = "ok", True
        self.prompts.clear()
        self.cancelled.clear()

    # -- lifecycle ----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/ws", self.ws)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/history/{prompt_id}", self.get_history)
        app.router.add_get("/view", self.view)
        app.router.add_post("/upload/image", self.upload)
        app.router.add_get("/system_stats", self.system_stats)
        app.router.add_post("/queue", self.queue_op)
        app.router.add_post("/interrupt", self.interrupt)
        return app

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())
        self._runner = web.AppRunner(self.app(), shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for event in self._interrupts.values():
            event.set()
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
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def queue_op(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.cancelled.extend(body.get("delete", []))
        return web.json_response({})

    async def interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        for prompt_id, event in self._interrupts.items():
            if body.get("prompt_id") in (None, prompt_id):
                event.set()
        return web.json_response({})

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        workflow = body.get("prompt")
        problem = validate_prompt(workflow, self.uploads)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = str(uuid.uuid4())
        self._number += 1
        self.prompts.append(workflow)
        assert self._queue is not None
        await self._queue.put((prompt_id, workflow, str(body.get("client_id") or "")))
        return web.json_response(
            {"prompt_id": prompt_id, "number": self._number, "node_errors": {}}
        )

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if not self.websocket:
            return web.Response(status=404)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        ws = web.WebSocketResponse()
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
        assert self._queue is not None
        while True:
            prompt_id, workflow, client_id = await self._queue.get()
            if prompt_id in self.cancelled:
                continue
            await self._execute(prompt_id, workflow, client_id)

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

    async def _execute(self, prompt_id: str, workflow: dict[str, Any], client_id: str) -> None:
        messages: list[list[Any]] = []

        async def send(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": prompt_id}
            messages.append([kind, data])
            await self._send(client_id, kind, data)

        await send("execution_start", {"timestamp": _now_ms()})
        await send("execution_cached", {"nodes": [], "timestamp": _now_ms()})
        results: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        for node_id in self._order(workflow):
            node = workflow[node_id]
            await send("executing", {"node": node_id, "display_node": node_id})
            inputs = {
                name: results[str(v[0])][v[1]] if is_link(v) else v
                for name, v in node["inputs"].items()
            }
            if "steps" in inputs and not await self._sample(prompt_id, node_id, inputs, send):
                if self.mode == "execution_error":
                    await send(
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
                self.history[prompt_id] = self._entry(workflow, {}, messages, "error")
                return
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
        self.history[prompt_id] = self._entry(workflow, outputs, messages, "success")
        await send("executing", {"node": None})
        await send("execution_success", {"timestamp": _now_ms()})

    async def _sample(
        self, prompt_id: str, node_id: str, inputs: dict[str, Any], send: Any
    ) -> bool:
        """Report sampler progress; False when the run ends here (a fault mode)."""
        steps = min(int(inputs["steps"]), self.max_steps)
        for step in range(1, steps + 1):
            if self.mode == "execution_error":
                return False
            if self.mode == "vanish" and step == 2:
                await self._vanish()
                return False
            if self.mode == "hang" and step == 2:
                event = self._interrupts.setdefault(prompt_id, asyncio.Event())
                await event.wait()
                await send("execution_interrupted", {"node_id": node_id, "executed": []})
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

    @staticmethod
    def _entry(workflow: Any, outputs: dict[str, Any], messages: list[Any], status: str) -> dict:
        return {
            "prompt": [0, "", workflow, {}, list(outputs)],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {},
        }


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
