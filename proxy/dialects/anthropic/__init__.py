"""The Anthropic Messages dialect: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

For Anthropic's SDKs and Claude Code pointed at Switchyard (``ANTHROPIC_BASE_URL``).
Callers are identified by ``x-api-key`` (or a bearer token); ``anthropic-version`` and
``anthropic-beta`` are accepted and not required. Every error under ``/v1/messages``,
the 401 answered before the app included, is in Anthropic's shape (``errors``).

RULES: request -> chat request (``request``)
- ``system`` (a string, or text blocks joined by a blank line) -> a first ``system``
  message. ``cache_control`` on any block or tool is accepted and ignored.
- ``user`` messages: ``text`` -> text parts (a lone text block -> a plain string),
  ``image`` -> an ``image_url`` part (``base64`` as a ``data:`` URL, ``url`` as is),
  ``tool_result`` -> a ``tool`` message (``tool_call_id`` = ``tool_use_id``; text blocks
  joined by a newline; ``is_error: true`` -> the content starts with ``Error: ``).
  The tool messages come first, then one user message with the rest, so that they
  follow the assistant's tool calls as Chat Completions requires; images a tool
  returned go into that user message (chat tool messages hold text only).
- ``assistant`` messages: ``text`` blocks -> ``content`` (concatenated), ``tool_use`` ->
  ``tool_calls`` (``arguments`` = the ``input`` as JSON), ``thinking`` and
  ``redacted_thinking`` dropped.
- A final ``assistant`` message (Anthropic's prefill) stays the last chat message:
  whether the model continues it depends on the upstream.
- A block in the wrong role (``tool_use`` from the user, ``image`` or ``tool_result``
  from the assistant), an unknown block type, an empty message list or an empty
  content list is a 400 naming where it is.
- ``tools`` (client tools: ``name``, ``description``, ``input_schema``) -> function
  tools; a server tool type (``web_search_20250305``, ...) is a 400. ``tool_choice``:
  ``auto`` -> ``auto``, ``any`` -> ``required``, ``tool`` -> the named function,
  ``none`` -> ``none``; ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``.
- ``max_tokens`` (required, as Anthropic requires it) -> ``max_tokens``;
  ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p``, ``top_k`` as they are (the
  local adapter reads ``top_k``); ``metadata.user_id`` -> ``user``; ``stream`` ->
  ``stream`` with ``stream_options.include_usage`` (the usage is needed for
  ``message_delta``); the ``switchyard`` field passes unchanged (extensions).
- ``output_config.format`` (``json_schema``) -> ``response_format`` ``json_schema``
  (named ``output``, strict); ``output_config.effort`` is not passed on.
- ``thinking`` reaches Anthropic upstreams only, on the native path; it is dropped in
  translation.

RULES: chat completion -> message (``response``)
- ``id`` = ``msg_`` + the completion id without ``chatcmpl-``; ``model`` = the name the
  client asked for; ``content`` = a ``text`` block (when there is text), then a
  ``tool_use`` block per tool call (``id`` = the chat tool call id, so a
  ``tool_result`` names it back; ``input`` = the arguments parsed, ``{}`` when empty).
  Arguments that are not a JSON object are the upstream's error (502), except when the
  output was cut at the token limit (``length``): that call was cut off mid-way and is
  dropped (the text stays), and the message says ``stop_reason: max_tokens``.
- ``stop_reason``: ``stop`` -> ``end_turn``, ``length`` -> ``max_tokens``,
  ``tool_calls`` -> ``tool_use``, ``content_filter`` -> ``refusal``. It is
  ``stop_sequence`` (with ``stop_sequence`` set) when (a) the choice names the stop
  sequence that ended it (``stop_reason``, vLLM's field, which the local adapter sets
  too) and it is one of the client's, or (b) the output contains one of the client's
  sequences (an upstream that ignored ``stop``): the text is cut before the earliest
  (the longest, of several starting there). An upstream that applies ``stop`` without
  naming the match cannot be told from the model's own end: that is ``end_turn``.
- ``usage``: ``input_tokens`` = ``prompt_tokens``, ``output_tokens`` =
  ``completion_tokens``, as the upstream reported them.

RULES: chunk stream -> events
- ``message_start`` (empty content, ``stop_reason: null``, usage 0/0: the chat stream
  reports usage only at its end), then per block ``content_block_start``,
  ``content_block_delta`` (``text_delta``, or ``input_json_delta`` with the arguments
  pieces as they come), ``content_block_stop``; ``ping`` right after the first
  ``content_block_start``; then ``message_delta`` (``stop_reason``, ``stop_sequence``,
  cumulative ``usage`` with ``output_tokens`` and the exact ``input_tokens``, which the
  SDK's accumulator takes over) and ``message_stop``. Every event has an ``event:`` line.
- A tool call cut off by the token limit keeps the ``input_json_delta`` pieces it had
  (as Anthropic's own stream does) and ends with ``stop_reason: max_tokens``.
- A failure after the stream began ends it with an ``error`` event in Anthropic's shape
  (a failure that is not the gateway's typed error: logged, and a generic message).

RULES: ``count_tokens``
- With a local model (a deployment with the ``tokenize`` capability): exactly the
  tokens the model's chat template renders for the translated messages and tools, with
  the generation prompt (what ``/v1/tokens/count`` answers for them). Otherwise an
  estimate: the JSON of the translated messages and tools, at four characters a token.
  The ``x-switchyard-token-count`` header says which (``exact`` / ``estimate``).
  Extensions do not apply (a model-name suffix is dropped). A ``native: [messages]``
  model gets the client's body (server tools and all) passed to its upstream's own
  ``count_tokens``, as ``/v1/messages`` passes through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.dialects import Dialect
from proxy.dialects.anthropic.errors import render_error
from proxy.errors import SwitchyardError

if TYPE_CHECKING:
    from proxy.settings import Settings


class MessagesDialect(Dialect):
    name = "messages"
    prefixes = ("/v1/messages",)

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        from proxy.dialects.anthropic.routes import ROUTES

        return list(ROUTES)

    @classmethod
    def render_error(cls, error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
        return render_error(error)
