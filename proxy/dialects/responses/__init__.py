"""The OpenAI Responses API (``POST /v1/responses`` and its stored responses).

A request is translated into a Chat Completions body and served by the one gateway
(``proxy.dialects.bridge.run_chat``), so tenancy, limits, extensions, the cache and the
router are the chat route's. Errors are OpenAI's (the default renderer), so the dialect
owns no prefix.

RULES (request -> chat body, ``translate.chat_body``)
- ``instructions`` -> a ``system`` message, first; it is not carried along a chain (as
  on OpenAI: each request's instructions replace the previous ones).
- ``previous_response_id`` -> the stored chat messages of that response's whole chain
  (its input and output turns), before this request's input. Unknown, another
  owner's, or stored with ``store: false``: 404 (param ``previous_response_id``).
- ``input`` string -> one user message. Items: ``message`` (roles user, system,
  developer, assistant; ``input_text`` parts joined into one string, ``input_image``
  -> an ``image_url`` part; an assistant's ``output_text``/``refusal`` -> its text),
  ``function_call`` -> a tool call on the assistant message before it (or a new
  assistant message), ``function_call_output`` -> a ``tool`` message with its
  ``call_id``. Any other item type: 400 naming it.
- ``tools``: ``function`` (flat shape) -> a chat function tool; ``web_search`` /
  ``web_search_preview`` -> the server tool ``web_search`` (``extensions/tools``, via the
  ``switchyard`` field: a 400 from the tools extension when it is not configured);
  ``file_search`` -> the server tool ``rag_search`` with its ``vector_store_ids`` as the
  request's RAG collections (so the RAG extension also adds its context for them); any
  other type: 400 naming it.
- ``tool_choice``: ``auto``/``none``/``required`` as is; ``{type: function, name}`` ->
  ``{type: function, function: {name}}``; a hosted tool type -> its server tool.
- ``text.format``: ``json_schema`` (flat) -> ``response_format: {type: json_schema,
  json_schema: {name, schema, description, strict}}``; ``json_object``/``text`` as is.
- ``max_output_tokens`` -> ``max_completion_tokens``; ``temperature``, ``top_p``,
  ``parallel_tool_calls``, ``user`` as is; ``reasoning.effort`` -> ``reasoning_effort``
  when every deployment forwards requests to an upstream, otherwise (a model run in
  process) ignored with an ``x-switchyard-warning`` header. ``metadata`` and
  ``truncation`` are echoed, not sent (``truncation: auto`` does not trim: a context
  overflow is a 400 either way). The client's ``switchyard`` field goes along.
- ``stream`` -> a chat stream with ``stream_options.include_usage``.
- ``background``, ``conversation`` and ``prompt`` (OpenAI platform features with no
  equivalent here): 400 naming them. Other parameters (``include``, ``service_tier``,
  ``prompt_cache_key``, ``text.verbosity``, ...) are accepted and not used.

RULES (chat -> response, ``translate.to_response`` and ``events``)
- Output: a ``message`` item (one ``output_text`` part, ``annotations: []``) when there
  is text, then one ``function_call`` item per tool call (its ``call_id`` is the chat
  tool call's id). ``finish_reason: length`` -> status ``incomplete`` with
  ``incomplete_details.reason: max_output_tokens`` (``content_filter`` likewise);
  otherwise ``completed``. Usage: ``input_tokens``/``output_tokens``/``total_tokens``
  with zero-valued details.
- Streams: see ``events``; the last event is ``response.completed``,
  ``response.incomplete``, or ``response.failed`` (a failure after the stream began).

Stored responses (``store``, default true): the response, its input items and the chain's
chat messages, in the state store (``StateStore.responses``), owned by the caller's
team and key; any replica continues a chain. ``GET``/``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` read them; another owner gets 404.

Native pass-through: when every deployment of the model says ``native: [responses]``
(the ``openai`` adapter) and the request activates no extension, the client's body goes
to the upstream's ``/responses`` unchanged: the upstream stores it and resolves
``previous_response_id``; the gateway passes the ids through and stores nothing, so
retrieve/delete/input_items of such responses are the upstream's (not proxied here).
A native stream is the upstream's events as they came; one that fails after it began
(cut before its terminal event, malformed data) ends with the API's ``error`` event,
``sequence_number`` one past the upstream's last, and the request is recorded as failed
(its error's status in metrics and the access log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.dialects import Dialect

if TYPE_CHECKING:
    from proxy.settings import Settings


class ResponsesDialect(Dialect):
    name = "responses"

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        from proxy.dialects.responses.routes import handlers

        return handlers()
