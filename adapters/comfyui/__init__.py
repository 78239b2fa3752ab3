"""ComfyUI: images and video from workflow templates.

One model entry names a ComfyUI server and a workflow per operation (``generate``,
``edit``, ``variation``, ``video``; see ``workflow.py`` for the spec format). A request
fills the workflow's mapped inputs, uploads input images with ``/upload/image``,
submits to ``/prompt``, follows ``/ws`` (or polls ``/history``) and downloads the saved
files with ``/view``. Images are returned as bytes for the images route to store or
encode, without the metadata ComfyUI writes into them (the whole workflow) unless
the entry sets ``keep_metadata``; a video is streamed into the media store (an
animation, from SaveAnimatedPNG or SaveAnimatedWEBP, is stripped like an image
first). The capabilities an entry declares are those its workflows cover, so a model
with only a ``generate`` workflow answers ``POST /v1/videos`` with a 400 that says so.

Readiness is the shared health of the entry's server (``health.py``), and whether
this entry's own workflow last failed for want of a file on the server (a missing
checkpoint), until it runs again. A request whose client disconnects is cancelled,
and with it the prompt on the server.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import httpx

from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, Resources
from adapters.comfyui.client import ComfyClient
from adapters.comfyui.config import ComfyUIConfig
from adapters.comfyui.events import MISSING_FILE, OutputFile
from adapters.comfyui.health import server_health
from adapters.comfyui.workflow import Workflow
from proxy.errors import InvalidRequest, SwitchyardError, UnsupportedCapability, UpstreamError
from proxy.media import GeneratedImages, MediaBlob, VideoOutput, media_store
from proxy.media.imaging import ImageInfo, inspect_image
from proxy.media.jobs import JobReporter
from proxy.media.metadata import strip_metadata
from proxy.media.uploads import FormEnvelope, Upload
from proxy.schemas.base import UNSET, Envelope
from proxy.schemas.images import (
    ImageEditRequest,
    ImageGenerationRequest,
    ImageRequest,
    ImageVariationRequest,
    parse_size,
)
from proxy.schemas.videos import VideoCreateRequest

log = logging.getLogger("switchyard.comfyui")

_IMAGE_KINDS = ("generate", "edit", "variation")
_SEED_RANGE = 2**48


class ComfyUIAdapter(Adapter):
    name = "comfyui"
    Config = ComfyUIConfig
    capabilities = frozenset({Capability.IMAGES, Capability.VIDEO})
    cancel_on_disconnect = True
    readiness_is_checked = True

    def __init__(self, config: DeploymentConfig, resources: Resources) -> None:
        super().__init__(config, resources)
        assert isinstance(config, ComfyUIConfig)
        self.cfg = config
        self.workflows = config.workflows.load()
        declared = set()
        if any(kind in self.workflows for kind in _IMAGE_KINDS):
            declared.add(Capability.IMAGES)
        if "video" in self.workflows:
            declared.add(Capability.VIDEO)
        self.capabilities = frozenset(declared)  # type: ignore[misc]
        connect = config.connect_timeout_s or resources.settings.http.connect_timeout_s
        self.health = server_health(resources, config.base_url)
        self.client = ComfyClient(
            config.base_url,
            resources.http,
            model=config.name,
            timeout=httpx.Timeout(config.timeout_s, connect=connect, pool=connect),
            headers=dict(config.headers),
            poll_interval_s=config.poll_interval_s,
            websocket=config.websocket,
            health=self.health,
        )
        self._max_output = int(config.max_output_mb * 1024 * 1024)
        #: Why this entry's workflow cannot run on its server (a file it names is missing).
        self._problem: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{httpx.URL(self.cfg.base_url).host}/{self.config.name}"

    # -- lifecycle and readiness ------------------------------------------------------

    async def start(self) -> None:
        await self.health.attach(self._check, self.cfg.health_interval_s)

    async def _check(self) -> None:
        try:
            await self.client.probe()
        except SwitchyardError as error:
            self.health.failed(f"ComfyUI at {self.cfg.base_url} is not answering: {error}")

    def readiness(self) -> tuple[bool, str]:
        ok, reason = self.health.state
        if ok and self._problem is not None:
            return False, self._problem
        return ok, reason

    async def aclose(self) -> None:
        await self.health.detach()
        await self.client.aclose()

    # -- shared steps -----------------------------------------------------------------

    def _workflow(self, kind: str, what: str) -> Workflow:
        workflow = self.workflows.get(kind)
        if workflow is None:
            raise UnsupportedCapability(
                f"Model '{self.config.name}' (comfyui adapter) has no {kind} workflow, so it "
                f"does not support {what}.",
                param="model",
            )
        return workflow

    def _values(
        self, params: ImageRequest | VideoCreateRequest, workflow: Workflow
    ) -> dict[str, Any]:
        """Mapped values every operation shares: prompt, negative prompt, size, steps."""
        values: dict[str, Any] = {}
        style = getattr(params, "style", None)
        if isinstance(params.prompt, str):
            values["prompt"] = params.prompt + workflow.style_suffix.get(str(style), "")
        if params.negative_prompt is not UNSET:
            values["negative_prompt"] = params.negative_prompt
        size = parse_size(params.size)
        if size is not None:
            values["width"], values["height"] = size
        quality = getattr(params, "quality", None)
        if params.steps is not UNSET:
            values["steps"] = params.steps
        elif isinstance(quality, str) and quality in workflow.quality_steps:
            values["steps"] = workflow.quality_steps[quality]
        return values

    @staticmethod
    def _size(workflow: Workflow, values: dict[str, Any]) -> str | None:
        width = values.get("width", workflow.default("width"))
        height = values.get("height", workflow.default("height"))
        return f"{width}x{height}" if isinstance(width, int) and isinstance(height, int) else None

    async def _inspect(self, upload: Upload, param: str) -> ImageInfo:
        return await asyncio.to_thread(
            inspect_image, upload.file, param=param, name=upload.filename
        )

    async def _upload(self, upload: Upload, info: ImageInfo) -> str:
        data = await asyncio.to_thread(upload.read)
        return await self.client.upload_image(data, info.extension)

    async def _run(
        self,
        workflow: Workflow,
        values: dict[str, Any],
        stats: CallStats,
        job: JobReporter | None = None,
    ) -> list[OutputFile]:
        started = time.perf_counter()
        try:
            files = await self.client.run(
                workflow.build(values),
                timeout_s=self.cfg.timeout_s,
                outputs=workflow.outputs,
                request_inputs=workflow.filled(values),
                on_progress=job.report if job is not None else None,
                on_accepted=job.accept if job is not None else None,
            )
        except UpstreamError as error:
            if error.error_code == "upstream_unavailable":
                self.health.failed(error.message)
            elif error.error_code == MISSING_FILE:
                self._problem = error.message
            raise
        finally:
            stats.upstream_s += time.perf_counter() - started
        self._problem = None
        return files

    async def _without_metadata(self, data: bytes) -> bytes:
        """``data`` without the workflow ComfyUI embeds, unless the entry keeps it."""
        if self.cfg.keep_metadata:
            return data
        return await asyncio.to_thread(strip_metadata, data)

    def _seed(self, given: int | Any) -> int:
        return given if isinstance(given, int) else secrets.randbelow(_SEED_RANGE)

    # -- images -----------------------------------------------------------------------

    async def _images(
        self, workflow: Workflow, values: dict[str, Any], n: int, seed: int, stats: CallStats
    ) -> GeneratedImages:
        """Run the workflow for ``n`` images: one batch when it maps ``batch_size``,
        else ``n`` runs with consecutive seeds."""
        runs = 1
        if workflow.maps("batch_size"):
            values["batch_size"] = n
        else:
            runs = n
        blobs: list[MediaBlob] = []
        for index in range(runs):
            values["seed"] = seed + index
            for ref in await self._run(workflow, values, stats):
                if ref.is_image and len(blobs) < n:
                    data = await self._without_metadata(
                        await self.client.download(ref, max_bytes=self._max_output)
                    )
                    blobs.append(MediaBlob(data, ref.content_type))
        if not blobs:
            raise UpstreamError(
                f"ComfyUI ran the workflow for '{self.config.name}' but it saved no image."
            )
        return GeneratedImages(blobs, size=self._size(workflow, values))

    async def generate_images(
        self, request: Envelope[ImageGenerationRequest], stats: CallStats
    ) -> GeneratedImages:
        workflow = self._workflow("generate", "image generation")
        params = request.params
        values = self._values(params, workflow)
        return await self._images(workflow, values, params.n, self._seed(params.seed), stats)

    async def _input_image(self, upload: Upload | None, param: str) -> str:
        if upload is None:
            raise InvalidRequest(f"An image is required: send it as '{param}'.", param=param)
        info = await self._inspect(upload, param)
        return await self._upload(upload, info)

    async def edit_images(
        self, request: FormEnvelope[ImageEditRequest], stats: CallStats
    ) -> GeneratedImages:
        workflow = self._workflow("edit", "image edits")
        params = request.params
        images = request.uploads("image")
        if len(images) > 1:
            raise InvalidRequest(
                f"Model '{self.config.name}' edits one image at a time; got {len(images)}.",
                param="image",
            )
        if not images:
            raise InvalidRequest("An image to edit is required: send it as 'image'.", param="image")
        image = images[0]
        info = await self._inspect(image, "image")
        mask = request.upload("mask")
        values = self._values(params, workflow)
        if workflow.maps("mask"):
            if mask is None:
                raise InvalidRequest(
                    f"Model '{self.config.name}' edits inside a mask: send 'mask', a PNG of the "
                    "image's size whose transparent pixels mark the area to change.",
                    param="mask",
                )
            mask_info = await self._inspect(mask, "mask")
            if not mask_info.has_alpha:
                raise InvalidRequest(
                    "The mask has no alpha channel: its transparent pixels must mark the area "
                    "to change.",
                    param="mask",
                )
            if (mask_info.width, mask_info.height) != (info.width, info.height):
                raise InvalidRequest(
                    f"The mask is {mask_info.width}x{mask_info.height} but the image is "
                    f"{info.width}x{info.height}; they must be the same size.",
                    param="mask",
                )
            values["mask"] = await self._upload(mask, mask_info)
        values["image"] = await self._upload(image, info)
        values.setdefault("width", info.width)
        values.setdefault("height", info.height)
        return await self._images(workflow, values, params.n, self._seed(params.seed), stats)

    async def image_variations(
        self, request: FormEnvelope[ImageVariationRequest], stats: CallStats
    ) -> GeneratedImages:
        workflow = self._workflow("variation", "image variations")
        params = request.params
        values = self._values(params, workflow)
        image = request.upload("image")
        values["image"] = await self._input_image(image, "image")
        return await self._images(workflow, values, params.n, self._seed(params.seed), stats)

    # -- video ------------------------------------------------------------------------

    async def create_video(
        self, request: FormEnvelope[VideoCreateRequest], job: JobReporter, stats: CallStats
    ) -> VideoOutput:
        workflow = self._workflow("video", "video")
        params = request.params
        values = self._values(params, workflow)
        default_fps = workflow.default("fps")
        given = params.fps if params.fps is not UNSET else default_fps
        fps = int(given) if isinstance(given, int | float) and given >= 1 else 8
        seconds = params.duration()
        frames = params.frames if params.frames is not UNSET else seconds * fps
        values.update(fps=fps, frames=frames, seed=self._seed(params.seed))
        reference = request.upload("input_reference")
        if workflow.maps("image"):
            if reference is None:
                raise InvalidRequest(
                    f"Model '{self.config.name}' makes video from an image: send "
                    "'input_reference'.",
                    param="input_reference",
                )
            values["image"] = await self._input_image(reference, "input_reference")
        elif reference is not None:
            raise InvalidRequest(
                f"Model '{self.config.name}' makes video from text only; it takes no "
                "'input_reference'.",
                param="input_reference",
            )
        files = await self._run(workflow, values, stats, job)
        video = next((f for f in files if f.content_type.startswith("video/")), None)
        video = video or next((f for f in files if f.is_video), None)
        if video is None:
            raise UpstreamError(
                f"ComfyUI ran the video workflow for '{self.config.name}' but saved no video."
            )
        store = media_store(self.resources)
        if video.is_image and not self.cfg.keep_metadata:  # an animation: its metadata goes
            data = await self.client.download(video, max_bytes=self._max_output)
            clean = await self._without_metadata(data)
            media = await store.save(clean, video.content_type, owner=job.owner)
        else:
            media = await self.client.download_to(
                video, store, max_bytes=self._max_output, owner=job.owner
            )
        shown_seconds = str(seconds) if params.frames is UNSET else f"{frames / fps:g}"
        return VideoOutput(media, self._size(workflow, values) or "auto", shown_seconds)
