"""deploy/helm/switchyard, rendered offline by the real helm binary (``make setup``
installs it in .tools/) and validated against the Kubernetes schemas bundled in
``kubernetes-validate``; then checked to agree with the server it runs: probe paths,
ports, where the config is mounted, and the config itself through ``check-config``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import CheckConfig
from tests.support.servers import ROOT

CHART = ROOT / "deploy" / "helm" / "switchyard"
KUBERNETES_VERSION = "1.30.0"
ALL_ON = ["--set", "ingress.enabled=true", "--set", "ingress.tls[0].secretName=tls"]


def helm_binary() -> str:
    for candidate in (os.environ.get("SWITCHYARD_HELM"), str(ROOT / ".tools" / "helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    if found is None:
        pytest.fail("helm is not installed: run `make setup` (it installs .tools/helm)")
    return found


def helm(*args: str) -> str:
    result = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(*options: str) -> dict[str, dict[str, Any]]:
    """``helm template`` output by kind (one object of each kind here)."""
    documents = [d for d in yaml.safe_load_all(helm("template", "rel", str(CHART), *options)) if d]
    by_kind = {d["kind"]: d for d in documents}
    assert len(by_kind) == len(documents), [d["kind"] for d in documents]
    return by_kind


def _container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _config(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(manifests["ConfigMap"]["data"]["switchyard.yaml"])  # type: ignore[no-any-return]


def test_chart_lints_strictly() -> None:
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART))


def test_every_rendered_manifest_is_valid_kubernetes() -> None:
    manifests = render(*ALL_ON)
    assert set(manifests) == {
        "Deployment",
        "Service",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Ingress",
    }
    for manifest in manifests.values():
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    broken = render()["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator really checks
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_optional_parts_are_off_or_on_as_asked() -> None:
    plain = render(
        "--set", "autoscaling.enabled=false", "--set", "podDisruptionBudget.enabled=false"
    )
    assert set(plain) == {"Deployment", "Service", "ConfigMap"}
    assert plain["Deployment"]["spec"]["replicas"] == 2
    assert "replicas" not in render()["Deployment"]["spec"]  # the autoscaler owns it


def test_probes_ports_and_the_config_mount_agree_with_the_server() -> None:
    for port in ("8080", "9100"):
        manifests = render("--set", f"port={port}", "--set", "config.server.port=1")
        container = _container(manifests)
        (container_port,) = container["ports"]
        config = _config(manifests)
        # server.port in the config file = containerPort = the Service's targetPort.
        assert config["server"]["port"] == container_port["containerPort"] == int(port)
        (service_port,) = manifests["Service"]["spec"]["ports"]
        assert service_port["targetPort"] == int(port)
        assert config["server"]["host"] == "0.0.0.0"
        # Probes on the server's own routes, on that port.
        assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
        assert container_port["name"] == "http"
        # `serve --config` reads the file where the ConfigMap is mounted.
        args = container["args"]
        assert args[:2] == ["switchyard", "serve"]
        config_path = Path(args[args.index("--config") + 1])
        pod = manifests["Deployment"]["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert Path(mount["mountPath"]) == config_path.parent
        assert config_path.name in manifests["ConfigMap"]["data"]
        # server.data_dir is a mounted volume (the root filesystem is read-only).
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert config["server"]["data_dir"] in mounts


def test_selectors_and_targets_name_the_deployment() -> None:
    manifests = render(*ALL_ON)
    deployment = manifests["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert manifests["Service"]["spec"]["selector"].items() <= pod_labels.items()
    pdb = manifests["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["minAvailable"] < manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", name)
    backend = manifests["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": manifests["Service"]["metadata"]["name"], "port": {"name": "http"}}


def test_security_context_non_root_read_only_with_writable_scratch() -> None:
    manifests = render()
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = _container(manifests)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    assert "/tmp" in writable
    resources = container["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]
    # Longer than the server's drain, so streams finish on a rollout.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > _config(manifests)["server"]["drain_timeout_s"]


def test_shared_media_uses_the_claim_when_one_is_named() -> None:
    pod = render("--set", "media.existingClaim=media-rwx")["Deployment"]["spec"]["template"]
    (media,) = [v for v in pod["spec"]["volumes"] if v["name"] == "media"]
    assert media == {"name": "media", "persistentVolumeClaim": {"claimName": "media-rwx"}}


def test_secrets_are_referenced_never_rendered() -> None:
    manifests = render("--set", "existingSecret=prod-switchyard")
    env = {e["name"]: e for e in _container(manifests)["env"]}
    for name in ("SWITCHYARD_MASTER_KEY", "SWITCHYARD_DATABASE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "prod-switchyard"
        assert "value" not in env[name]
    config = _config(manifests)
    assert config["server"]["master_key"] == "env:SWITCHYARD_MASTER_KEY"
    assert config["state"]["database"] == "env:SWITCHYARD_DATABASE_URL"
    assert "Secret" not in manifests


def test_ingress_is_sse_friendly() -> None:
    annotations = render(*ALL_ON)["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "25m"
    assert _config(render())["server"]["max_body_mb"] == 25


def test_the_rendered_config_passes_check_config(check_config: CheckConfig, tmp_path: Path) -> None:
    manifests = render("--set", "config.models[0].name=gpt-4o-mini", *_remote_model())
    path = tmp_path / "switchyard.yaml"
    path.write_text(manifests["ConfigMap"]["data"]["switchyard.yaml"])
    env = {
        "SWITCHYARD_MASTER_KEY": "sk-master",
        "SWITCHYARD_DATABASE_URL": "postgresql://switchyard:pw@postgres:5432/switchyard",
    }
    result = check_config(path, env)
    assert result.returncode == 0, result.stderr
    assert "listen: 0.0.0.0:8080" in result.stdout
    assert "model gpt-4o-mini" in result.stdout
    assert "section rag: chroma_url=http://switchyard-chroma:8000" in result.stdout
    # The secret references are real: without the variables the config does not run.
    missing = check_config(path, {"SWITCHYARD_MASTER_KEY": "sk-master"})
    assert missing.returncode == 1
    assert "SWITCHYARD_DATABASE_URL is not set" in missing.stderr


def _remote_model() -> list[str]:
    fields = {"adapter": "openai", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1"}
    return [arg for k, v in fields.items() for arg in ("--set", f"config.models[0].{k}={v}")]
