"""Workflow templates, and the mapping from request fields to node inputs.

A template is a workflow in ComfyUI's API format (in ComfyUI: "Export (API)"): an
object of node id -> ``{"class_type": ..., "inputs": {...}}``. A spec names the
template and says which node input each request field overwrites::

    template: text-to-image.json        # relative to the spec file
    inputs:
      prompt: "6.text"                  # node id "6", input "text"
      seed: ["3.seed", "12.noise_seed"] # a list: every target gets the value
    outputs: ["9"]                      # optional: whose files are the answer

Everything the mapping does not mention keeps the template's value (checkpoint,
sampler, cfg, ...). Specs are checked when the config is loaded: every target must
name a node of the template and an input that node already has, so a typo fails at
startup (and in ``switchyard check-config``) rather than on the first request.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

#: Request fields a mapping may name.
FIELDS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "seed",
        "steps",
        "batch_size",
        "image",
        "mask",
        "frames",
        "fps",
    }
)


class WorkflowError(ValueError):
    """A spec or template that cannot work; the message says which and why."""


class WorkflowSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    template: str
    """API-format workflow JSON; a relative path is relative to the spec file (for a
    spec written inline in the config: to the working directory)."""
    inputs: dict[str, str | list[str]] = {}
    """Request field -> ``"node_id.input"`` (or a list of them). Fields: prompt,
    negative_prompt, width, height, seed, steps, batch_size, image, mask, frames, fps."""
    outputs: list[str] = []
    """Node ids whose files are the result; empty: every node's saved files."""
    quality_steps: dict[str, int] = {}
    """Sampler steps for each ``quality`` value (``standard: 20``, ``hd: 40``, ...)."""
    style_suffix: dict[str, str] = {}
    """Text appended to the prompt for each ``style`` value (``vivid``, ``natural``)."""


@dataclass(frozen=True, slots=True)
class Target:
    node: str
    input: str


@dataclass(frozen=True, slots=True)
class Workflow:
    source: str
    template: dict[str, Any]
    targets: dict[str, tuple[Target, ...]]
    outputs: tuple[str, ...]
    quality_steps: dict[str, int]
    style_suffix: dict[str, str]

    def maps(self, field: str) -> bool:
        return field in self.targets

    def default(self, field: str) -> Any:
        """The template's own value for a mapped field (``None`` when unmapped)."""
        targets = self.targets.get(field)
        if not targets:
            return None
        first = targets[0]
        return self.template[first.node]["inputs"][first.input]

    def filled(self, values: dict[str, Any]) -> frozenset[tuple[str, str]]:
        """The ``(node id, input)`` pairs that ``build(values)`` writes."""
        return frozenset(
            (target.node, target.input)
            for field, value in values.items()
            if value is not None
            for target in self.targets.get(field, ())
        )

    def build(self, values: dict[str, Any]) -> dict[str, Any]:
        """A copy of the template with each mapped field in ``values`` written in."""
        workflow = copy.deepcopy(self.template)
        for field, value in values.items():
            if value is None:
                continue
            for target in self.targets.get(field, ()):
                workflow[target.node]["inputs"][target.input] = value
        return workflow


def _parse_target(text: str, field: str) -> Target:
    node, sep, name = text.partition(".")
    if not (sep and node and name):
        raise WorkflowError(f"inputs.{field}: '{text}' is not of the form 'node_id.input'")
    return Target(node, name)


def _read_template(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"template {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"template {path}: not valid JSON: {exc}") from None
    if isinstance(raw, dict) and "nodes" in raw and "links" in raw:
        raise WorkflowError(
            f"template {path}: this is ComfyUI's UI format; export it with 'Export (API)'"
        )
    if not isinstance(raw, dict) or not raw:
        raise WorkflowError(f"template {path}: expected an object of node id -> node")
    for node_id, node in raw.items():
        if not (isinstance(node, dict) and "class_type" in node and "inputs" in node):
            raise WorkflowError(f"template {path}: node {node_id} lacks class_type or inputs")
    return raw


def _read_spec(path: Path) -> WorkflowSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"workflow spec {path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise WorkflowError(f"workflow spec {path}: not valid YAML: {exc}") from None
    try:
        return msgspec.convert(raw, WorkflowSpec)
    except msgspec.ValidationError as exc:
        raise WorkflowError(f"workflow spec {path}: {exc}") from None


def load_workflow(spec: str | WorkflowSpec) -> Workflow:
    """Load a spec (a file path, or given inline) and its template, and check the mapping."""
    if isinstance(spec, str):
        spec_path = Path(spec)
        spec = _read_spec(spec_path)
        base = spec_path.parent
    else:
        base = Path.cwd()
    template_path = base / spec.template
    template = _read_template(template_path)
    targets: dict[str, tuple[Target, ...]] = {}
    for field, given in spec.inputs.items():
        if field not in FIELDS:
            raise WorkflowError(
                f"inputs.{field}: unknown field (known: {', '.join(sorted(FIELDS))})"
            )
        parsed = tuple(
            _parse_target(t, field) for t in ([given] if isinstance(given, str) else given)
        )
        for target in parsed:
            node = template.get(target.node)
            if node is None:
                raise WorkflowError(
                    f"inputs.{field}: node '{target.node}' is not in {template_path}"
                )
            if target.input not in node["inputs"]:
                raise WorkflowError(
                    f"inputs.{field}: node '{target.node}' ({node['class_type']}) has no "
                    f"input '{target.input}'"
                )
        targets[field] = parsed
    for node_id in spec.outputs:
        if node_id not in template:
            raise WorkflowError(f"outputs: node '{node_id}' is not in {template_path}")
    return Workflow(
        source=str(template_path),
        template=template,
        targets=targets,
        outputs=tuple(spec.outputs),
        quality_steps=dict(spec.quality_steps),
        style_suffix=dict(spec.style_suffix),
    )
