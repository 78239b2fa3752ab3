"""Workflow specs: the shipped examples load, mappings are checked at config time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.comfyui.workflow import WorkflowError, WorkflowSpec, load_workflow
from proxy.settings import ConfigError, settings_from_mapping

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "comfyui"
TEMPLATE = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "default", "clip": ["4", 1]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["3", 0]}},
}


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(TEMPLATE))
    return path


@pytest.mark.parametrize(
    ("spec", "needs"),
    [
        ("text-to-image.yaml", {"prompt", "width", "height", "seed", "batch_size"}),
        ("image-edit.yaml", {"image", "mask", "prompt"}),
        ("variation.yaml", {"image", "width", "height"}),
        ("image-to-video.yaml", {"image", "frames", "fps"}),
        ("text-to-video.yaml", {"prompt", "frames", "fps"}),
    ],
)
def test_shipped_examples_load(spec: str, needs: set[str]) -> None:
    workflow = load_workflow(str(DEPLOY / spec))
    assert needs <= set(workflow.targets)
    assert workflow.outputs and all(o in workflow.template for o in workflow.outputs)


def test_build_fills_every_target_and_leaves_the_template_alone(template: Path) -> None:
    spec = WorkflowSpec(template=str(template), inputs={"prompt": "6.text", "seed": ["3.seed"]})
    workflow = load_workflow(spec)
    built = workflow.build({"prompt": "a fox", "seed": 7, "width": 64, "negative_prompt": None})
    assert built["6"]["inputs"]["text"] == "a fox" and built["3"]["inputs"]["seed"] == 7
    assert workflow.template["6"]["inputs"]["text"] == "default"
    assert workflow.default("prompt") == "default" and workflow.default("width") is None
    assert workflow.maps("seed") and not workflow.maps("mask")


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ({"colour": "6.text"}, [], "inputs.colour: unknown field"),
        ({"prompt": "6"}, [], "not of the form 'node_id.input'"),
        ({"prompt": "42.text"}, [], "node '42' is not in"),
        ({"prompt": "6.txt"}, [], "node '6' (CLIPTextEncode) has no input 'txt'"),
        ({}, ["77"], "outputs: node '77'"),
    ],
)
def test_mapping_errors_name_the_problem(
    template: Path, inputs: dict[str, Any], outputs: list[str], message: str
) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(WorkflowSpec(template=str(template), inputs=inputs, outputs=outputs))
    assert message in str(caught.value)


def test_template_errors(tmp_path: Path) -> None:
    ui_format = tmp_path / "ui.json"
    ui_format.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(WorkflowError, match="Export \\(API\\)"):
        load_workflow(WorkflowSpec(template=str(ui_format)))
    with pytest.raises(WorkflowError, match="cannot read"):
        load_workflow(WorkflowSpec(template=str(tmp_path / "missing.json")))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        load_workflow(WorkflowSpec(template=str(broken)))


def test_spec_file_paths_are_relative_to_the_spec(tmp_path: Path, template: Path) -> None:
    (tmp_path / "spec.yaml").write_text("template: t.json\ninputs: {prompt: '6.text'}\n")
    assert load_workflow(str(tmp_path / "spec.yaml")).maps("prompt")
    (tmp_path / "bad.yaml").write_text("template: t.json\nextra: 1\n")
    with pytest.raises(WorkflowError, match=r"bad\.yaml"):
        load_workflow(str(tmp_path / "bad.yaml"))


def _entry(**fields: Any) -> dict[str, Any]:
    return {"models": [{"name": "sd", "adapter": "comfyui", **fields}]}


def test_config_validates_workflows_at_load(template: Path) -> None:
    good = _entry(workflows={"generate": str(DEPLOY / "text-to-image.yaml")})
    assert settings_from_mapping(good).models[0].adapter == "comfyui"
    with pytest.raises(ConfigError, match="name at least one of generate"):
        settings_from_mapping(_entry())
    bad = _entry(workflows={"edit": {"template": str(template), "inputs": {"mask": "9.mask"}}})
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(bad)
    assert "models[0]" in str(caught.value) and "workflows.edit" in str(caught.value)
    with pytest.raises(ConfigError, match="upscale"):
        settings_from_mapping(_entry(workflows={"upscale": "x.yaml"}))
