"""The Ollama API under ``/api``, for the clients that speak only it (desktop apps,
Open WebUI's Ollama connection, LangChain's ``ChatOllama``, the ``ollama`` packages).

Callers are identified like ``/v1`` callers (``Authorization: Bearer``), 401
otherwise; every error on ``/api`` is Ollama's ``{"error": "message"}`` with the
gateway's status (400 bad input, 401, 403, 404 unknown model, 429, 5xx upstream).

RULES (the translators are ``translate`` (requests) and ``answers``; the wire types ``wire``)

Model names
- Switchyard's names; a trailing ``:latest`` is dropped (``smol:latest`` is ``smol``),
  also before extension suffixes (``smol:latest+persona:editor``). ``/api/tags``
  lists a name without a tag of its own as ``name:latest``.
- An unknown model, or one the caller may not use: 404 ``model 'x' not found``;
  no model: 400 ``model is required``.

``/api/chat`` -> ``/v1/chat/completions``
- ``messages``: roles system/user/assistant/tool; ``images`` (base64) become
  ``image_url`` parts with a data URL of the sniffed type (PNG, JPEG, GIF, WebP);
  an assistant's ``tool_calls`` get ids (theirs, else ``call_<message>_<n>``) and
  their argument objects become JSON strings; a ``tool`` message answers its
  ``tool_call_id``, else the earliest unanswered call named ``tool_name``, else the
  earliest unanswered call.
- ``tools``: function tools, passed as they are (OpenAI's shape); others: 400.
- ``format``: ``"json"`` -> ``response_format: json_object``; a schema ->
  ``json_schema`` (``{"name": "format", "schema": ...}``); ``""``: plain text.
- ``options`` (types checked as Ollama's ``Options.FromMap`` does, unknown ones
  ignored): ``num_predict`` > 0 -> ``max_tokens``; ``temperature``, ``top_p``,
  ``top_k``, ``min_p``, ``repeat_penalty`` (the local adapter's llama.cpp-server
  fields), ``presence_penalty``, ``frequency_penalty`` by name; ``seed`` >= 0; ``stop``.
  ``num_ctx`` cannot resize a loaded model's context (fixed by ``n_ctx``): within the
  model's window it has no effect, beyond it it is a 400. Runner options
  (``num_gpu``, ``num_thread``, ...) are load-time settings of the configuration: ignored.
- ``think``, ``truncate``, ``shift``, ``logprobs`` are accepted and ignored.
- ``stream`` defaults to true: NDJSON (``application/x-ndjson``), one object per
  content delta (``message.content``), tool calls sent whole in one object
  (``message.tool_calls``, arguments as an object, ``index`` and ``id`` per call),
  then the final object with ``done: true``, ``done_reason`` (``length`` when
  cut at the token limit, else ``stop``, after tool calls too, as Ollama says) and
  the metrics. ``stream: false``: one object with the whole message and the metrics.
  A failure after the stream began is an ``{"error": ...}`` line, as Ollama sends it
  (a generic message for one that is not the gateway's typed error, which is logged).
- Tool-call arguments that are not a JSON object are the upstream's error (502),
  except when the output was cut at the token limit: that call was cut off mid-way and
  is dropped (the text stays), with ``done_reason: length``.
- Metrics (nanoseconds; a 0 is unknown and omitted as Ollama omits it):
  ``prompt_eval_count``/``eval_count`` are the upstream's prompt/completion tokens;
  ``total_duration`` from the request's arrival; streamed: ``prompt_eval_duration``
  until the first output, ``eval_duration`` from there to the end; whole answers:
  ``eval_duration`` is the upstream call's time. ``load_duration`` is not known.
- No ``messages``: the model is loaded (``done_reason: load``), or with
  ``keep_alive: 0`` unloaded (``done_reason: unload``), as Ollama does. Such a request
  is admitted as a model call is (allowed models, rate, parallel and budget limits,
  usage and metrics).
- The ``switchyard`` body field is passed on unchanged (persona, session, RAG, tools);
  headers and model-name suffixes work as on ``/v1``.

``/api/generate``
- ``prompt`` (+ ``system``, ``images``, ``format``, ``options``) -> a chat request with
  one user message; ``raw: true`` or a ``suffix`` -> ``/v1/completions`` (``suffix``
  is fill-in-the-middle, which the model must support: its adapter refuses otherwise);
  ``raw`` with ``system``: 400 as Ollama says; ``template``: 400 (the model's own
  template is always used); ``images``/``format`` with raw or suffix: 400.
- ``context`` (deprecated) is ignored and never returned. Empty ``prompt``: load or
  unload, as for chat. The answer objects carry ``response`` instead of ``message``.

``keep_alive`` (seconds, a Go duration like ``"5m"``, negative: forever)
- For models in this process (llama.cpp): replaces the model's ``idle_unload_s`` from
  this request on; ``0`` unloads it as soon as no request holds it; not sent: the
  configured ``idle_unload_s`` again. Remote models: nothing to do.

``/api/embed``, ``/api/embeddings`` -> ``/v1/embeddings``
- ``input`` (a string or strings; anything else 400 ``invalid input type``) ->
  ``embeddings`` (the vectors exactly as ``/v1/embeddings`` gives them: not
  re-normalized), ``dimensions`` passed on, ``prompt_eval_count`` the input tokens.
  ``truncate`` is not supported: too long an input is the model's 400 (as
  ``truncate: false``). Empty input answers no vectors without a model call. The
  legacy ``/api/embeddings`` takes ``prompt`` and answers ``embedding``.

``/api/tags``, ``/api/show``, ``/api/ps``, ``/api/version``, ``/``
- ``tags``: the caller's models (as ``/v1/models``) with ``details`` from the adapter
  (``Adapter.model_facts``: GGUF format, architecture, size label, quantization, file
  size and time); remote models: size 0, empty details, a digest of the name. A local
  model's digest identifies its file (path, size, time), not a hash of the weights.
- ``show``: details, ``model_info`` (the GGUF metadata), ``template`` (the GGUF chat
  template), a short ``modelfile``, ``parameters`` (``num_ctx``), ``capabilities``
  (completion, tools, embedding).
- ``ps``: loaded local models (``Adapter.local_models``) with their estimated memory
  as ``size``; ``size_vram`` 0 (not measured); ``expires_at`` from the idle unload.
- ``version``: the Ollama release whose API this follows; GET and HEAD ``/`` answer
  ``Ollama is running``, which Ollama clients probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from proxy.dialects import Dialect
from proxy.errors import SwitchyardError

if TYPE_CHECKING:
    from proxy.settings import Settings

_encode = msgspec.json.Encoder().encode


class OllamaDialect(Dialect):
    name = "ollama"
    prefixes: ClassVar[tuple[str, ...]] = ("/api",)
    identified_prefixes: ClassVar[tuple[str, ...]] = ("/api/",)

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        from proxy.dialects.ollama.routes import HANDLERS

        return list(HANDLERS)

    @classmethod
    def render_error(cls, error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
        """Ollama's error body: ``{"error": "message"}``, with the gateway's status."""
        return error.http_status, _encode({"error": error.message}), error.headers
