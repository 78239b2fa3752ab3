"""deploy/grafana/switchyard.json and deploy/prometheus/alerts.yaml against a real
gateway's /metrics: every series their PromQL selects, and every label it matches or
groups by, exists in what the gateway exports after traffic that exercises each one
(requests, streams, an upstream failure and its cooldown, a limit rejection, priced
usage). PromQL is parsed by ``promql-parser`` (Prometheus's grammar), not by regex;
``promtool check rules`` checks the rules file."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_openai import FakeOpenAI, running_fake, status_fault
from tests.support.servers import ROOT, serve_gateway
from tests.support.tenancy import Admin, chat_model, sdk, tenancy_config

DASHBOARD = ROOT / "deploy" / "grafana" / "switchyard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
#: Labels Prometheus attaches to every scraped series (the scrape target's).
TARGET_LABELS = {"job", "instance"}
#: Series Prometheus makes itself for each target rather than scraping them.
SYNTHETIC = {"up"}
#: Grafana's interval variables, replaced as Grafana does before the query is sent.
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s"}
PRICE = {"input_per_1m": 1.0, "output_per_1m": 2.0}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict) and query["query"].startswith("label_values("):
            inner = query["query"].removeprefix("label_values(").removesuffix(")")
            found.append(inner.rsplit(",", 1)[0])  # label_values(<selector>, <label>)
    return found


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, value)
    return expr


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The (metric name, matched label names) of each selector in ``expr``, and the label
    names its aggregations group by."""
    found: list[tuple[str, set[str]]] = []
    grouped: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name for m in node.matchers.matchers}
            assert node.name, f"a selector without a metric name in {expr!r}"
            found.append((node.name, matchers - {"__name__"}))
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouped.update(node.modifier.labels)
        return True

    promql_parser.walk(promql_parser.parse(grafana_to_promql(expr)), visit)
    return found, grouped


def exported(text: str) -> dict[str, set[str]]:
    """Every sample name in a /metrics body (``_total``, ``_bucket``... included) and the
    label names it carries."""
    labels: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return labels


@pytest.fixture(scope="module")
def metrics_text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_fake() as (fake, fake_url):
        yield _traffic(fake, fake_url, tmp_path_factory.mktemp("data"))


def _traffic(fake: FakeOpenAI, fake_url: str, data_dir: Path) -> str:
    fake.faults["broken"] = status_fault(500)
    models = [
        chat_model("priced", "upstream-priced", fake_url, price=PRICE),
        chat_model("flaky", "broken", fake_url),
    ]
    with serve_gateway(tenancy_config(data_dir, models)) as gateway, Admin(gateway) as admin:
        team = admin.team("observed")
        key = admin.key(team["id"])["key"]
        limited = admin.key(team["id"], name="limited", rpm_limit=1)["key"]
        with sdk(gateway, key) as client:
            client.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "hi"}]
            )
            stream = client.chat.completions.create(
                model="priced",
                messages=[{"role": "user", "content": "stream"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            assert any(chunk.usage for chunk in stream)
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(
                    model="flaky", messages=[{"role": "user", "content": "x"}]
                )
        with sdk(gateway, limited) as client:
            client.chat.completions.create(
                model="priced", messages=[{"role": "user", "content": "a"}]
            )
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(
                    model="priced", messages=[{"role": "user", "content": "b"}]
                )
        response = httpx.get(f"{gateway.url}/metrics", timeout=15)
        assert response.status_code == 200
        return response.text


def test_every_series_the_dashboard_and_alerts_use_is_exported(metrics_text: str) -> None:
    labels = exported(metrics_text)
    expressions = dashboard_expressions() + alert_expressions()
    assert len(expressions) >= 25
    used: set[str] = set()
    for expr in expressions:
        found, grouped = selectors(expr)
        assert found, expr
        available = set(TARGET_LABELS)
        for name, matched in found:
            used.add(name)
            if name in SYNTHETIC:
                available |= matched
                continue
            assert name in labels, f"{name} (in {expr!r}) is not in /metrics"
            assert matched <= labels[name] | TARGET_LABELS, (expr, matched - labels[name])
            available |= labels[name]
        assert grouped <= available, (expr, grouped - available)
    # What the dashboard promises: traffic, latency, tokens, cost, upstream health,
    # limits and the processes.
    for name in (
        "switchyard_requests_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_prompt_tokens_total",
        "switchyard_completion_tokens_total",
        "switchyard_team_cost_usd_total",
        "switchyard_upstream_errors_total",
        "switchyard_deployment_cooldowns_total",
        "switchyard_limit_rejections_total",
        "switchyard_ready",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert name in used, name


def test_the_exported_values_reflect_the_traffic(metrics_text: str) -> None:
    """The series the dashboard reads carry what happened, so its panels are not empty."""
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return sum(
            v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()
        )

    assert value("switchyard_requests_total", model="priced", status="200") == 3
    assert value("switchyard_limit_rejections_total", kind="rpm") == 1
    assert value("switchyard_deployment_cooldowns_total") >= 1
    assert value("switchyard_upstream_errors_total") >= 1
    assert value("switchyard_team_cost_usd_total") > 0
    assert value("switchyard_ready") == 1
    assert value("process_resident_memory_bytes") > 0


def test_a_misspelt_metric_is_caught() -> None:
    """The check above fails for a name the gateway does not export (and the parser sees
    through functions, aggregations and binary operators to find it)."""
    expr = 'sum by (model) (rate(switchyard_request_total{model=~"$model"}[$__rate_interval])) / 2'
    ((name, matched),) = selectors(expr)[0]
    assert name == "switchyard_request_total" and matched == {"model"}
    assert selectors(expr)[1] == {"model"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make setup` (Debian package prometheus)")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_alert_rules() -> None:
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_expressions())} rules found" in result.stdout


def test_the_alerts_fire_on_their_series_and_only_after_their_for() -> None:
    """promtool's rule unit tests (tests/deploy/promtool/alerts.test.yaml): error rate,
    readiness and limit-rejection alerts on synthetic series."""
    result = _promtool(
        "test", "rules", str(Path(__file__).parent / "promtool" / "alerts.test.yaml")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
