"""The ``comfyui`` model entry."""

from __future__ import annotations

from typing import Annotated

import msgspec

from adapters.base import DeploymentConfig
from adapters.comfyui.workflow import Workflow, WorkflowError, WorkflowSpec, load_workflow
from proxy.settings import config_path

WorkflowRef = str | WorkflowSpec
"""A workflow spec file (YAML with ``template``, ``inputs``, ...), or the spec inline."""

KINDS = ("generate", "edit", "variation", "video")


class Workflows(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One workflow per operation; an operation without one is refused with a 400."""

    generate: WorkflowRef | None = None
    """``POST /v1/images/generations`` (text to image)."""
    edit: WorkflowRef | None = None
    """``POST /v1/images/edits`` (image + prompt, with a mask when it maps one)."""
    variation: WorkflowRef | None = None
    """``POST /v1/images/variations``."""
    video: WorkflowRef | None = None
    """``POST /v1/videos`` (text to video, or image to video when it maps ``image``)."""

    def __post_init__(self) -> None:
        """Spec files, and inline specs' templates, are relative to the config file."""
        for kind in KINDS:
            ref = getattr(self, kind)
            if isinstance(ref, str):
                setattr(self, kind, str(config_path(ref)))
            elif isinstance(ref, WorkflowSpec):
                ref.template = str(config_path(ref.template))

    def load(self) -> dict[str, Workflow]:
        loaded: dict[str, Workflow] = {}
        for kind in KINDS:
            ref = getattr(self, kind)
            if ref is None:
                continue
            try:
                loaded[kind] = load_workflow(ref)
            except WorkflowError as exc:
                raise WorkflowError(f"workflows.{kind}: {exc}") from None
        return loaded


class ComfyUIConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    base_url: str = "http://127.0.0.1:8188"
    """The ComfyUI server (its HTTP root; the websocket is ``/ws`` under it)."""
    workflows: Workflows = msgspec.field(default_factory=Workflows)
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    """Longest one workflow may take from submission to its last output; then 504."""
    connect_timeout_s: float | None = None
    """Connect timeout; defaults to ``http.connect_timeout_s``."""
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """How often ``/history`` is polled when the websocket is not available."""
    websocket: bool = True
    """Follow progress on ``/ws``; off: poll ``/history`` only."""
    health_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """How often readiness probes ``/system_stats``."""
    max_output_mb: Annotated[float, msgspec.Meta(gt=0)] = 2048.0
    """Largest output file downloaded from ComfyUI."""
    headers: dict[str, str] = {}
    """Extra headers for every request to ComfyUI (a token for a proxy in front of it)."""
    keep_metadata: bool = False
    """Return images with the metadata ComfyUI writes into them (the whole workflow in
    PNG text chunks or EXIF: node settings, upload names, checkpoint names). Off: it is
    removed, the pixels untouched."""

    def __post_init__(self) -> None:
        if not any(getattr(self.workflows, kind) is not None for kind in KINDS):
            raise ValueError("workflows: name at least one of generate, edit, variation, video")
        self.workflows.load()  # fail at config load, naming the problem
