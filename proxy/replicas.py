"""Whether a configuration can run as several processes, and why not.

``switchyard serve --workers N`` and ``switchyard check-config FILE --workers N`` ask
``replica_problems``: a model whose adapter holds its weights in this process
(``Adapter.holds_models_in_process``: each worker would load its own copy, and share no
GPU) cannot run with more than one worker, and the message shows the two-tier layout
that can. Everything else is asked of the plugins: every installed extension's
``replica_problems`` hook reports its own (the core does not know what a plugin keeps
where).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import registered_adapters
from extensions.base import registered_extensions
from proxy.settings import Settings

TWO_TIER = """\
Run the local models in one engine instance that owns them (and the GPUs), and the
gateway replicas as a remote-only configuration that reaches the engine through the
openai adapter:

  # engine.yaml: switchyard serve --config engine.yaml  (one process: the built-in
  # local models, and your own local model entries)
  server: {host: 0.0.0.0, port: 8080}

  # gateway.yaml: switchyard serve --config gateway.yaml --workers 4
  defaults: false          # the built-in models are local: leave them to the engine
  models:
    - {name: smollm2-135m, adapter: openai, base_url: "http://engine:8080/v1"}
    - {name: smollm2-135m-embed, adapter: openai, base_url: "http://engine:8080/v1"}

(see "Replicas and the two-tier layout" in README.md, deploy/switchyard.engine.yaml
and deploy/switchyard.gateway.yaml)"""


@dataclass(frozen=True, slots=True)
class ReplicaPlan:
    """How many copies of the configuration will run at once."""

    workers: int = 1
    """Processes on this host (``--workers``)."""
    shared_state: bool = False
    """The state database is a server (PostgreSQL): the way several replicas share state,
    so the configuration is taken to run as several replicas."""

    @property
    def replicated(self) -> bool:
        return self.workers > 1 or self.shared_state

    @property
    def reason(self) -> str:
        """What makes this plan several processes, for messages."""
        if self.workers > 1:
            return f"--workers {self.workers}"
        return "PostgreSQL state (several replicas)"


def plan_for(settings: Settings, workers: int) -> ReplicaPlan:
    database = settings.state.database or ""
    return ReplicaPlan(workers=workers, shared_state=database.startswith("postgresql"))


def local_models(settings: Settings) -> list[str]:
    """Names of the configured models whose adapter holds them in this process."""
    adapters = registered_adapters()
    found = [m.name for m in settings.models if adapters[m.adapter].holds_models_in_process]
    return list(dict.fromkeys(found))


PER_PROCESS_WITHOUT_REDIS = (
    "without state.redis_url, each process counts on its own: rate limits (an RPM of 10 "
    "admits 10 per process), the parallel-request gate, the response cache and key "
    "revocations (seen elsewhere only after key_cache_ttl_s); POST /admin/reload reaches "
    "only the process that took it (send SIGHUP to the parent instead). Set "
    "state.redis_url to share them."
)


def replica_warnings(settings: Settings, plan: ReplicaPlan) -> list[str]:
    """What works but differs per process when ``settings`` runs as ``plan``."""
    if plan.replicated and not settings.state.redis_url:
        return [f"{plan.reason}: {PER_PROCESS_WITHOUT_REDIS}"]
    return []


def replica_problems(settings: Settings, plan: ReplicaPlan) -> list[str]:
    """Why ``settings`` cannot run as ``plan`` says; empty when it can."""
    problems: list[str] = []
    local = local_models(settings)
    if local and plan.workers > 1:
        builtin = (
            " (the built-in models are local: set `defaults: false`)" if settings.defaults else ""
        )
        problems.append(
            f"{plan.reason}: the local models {', '.join(local)} are held in the server "
            f"process{builtin}, and each worker would load its own copy.\n{TWO_TIER}"
        )
    for extension in registered_extensions().values():
        problems += extension.replica_problems(settings, plan)
    return problems
