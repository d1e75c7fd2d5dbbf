"""pydantic-ai: an agent with a tool (a 2-round loop), through seeded_llm."""

from __future__ import annotations

import pytest
from flow import SEED, TEMPERATURE, require, run_flow

from llmserver import LLMServer

require("pydantic_ai")

# A library's own defaults (llama-index's temperature=0.1) meet the markers: the
# override warning is expected here, not an error of the inner run.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")

APP = """
import asyncio

import openai
from pydantic_ai import Agent
from pydantic_ai.providers.openai import OpenAIProvider

try:  # the chat-completions model (pydantic-ai 2 defaults "openai:" to the Responses API)
    from pydantic_ai.models.openai import OpenAIChatModel as ChatModel
except ImportError:  # pydantic-ai 1.x
    from pydantic_ai.models.openai import OpenAIModel as ChatModel


def get_weather(city: str) -> str:
    return f"sunny in {city}"


async def _ask(question):
    async with openai.AsyncOpenAI() as client:  # closed on the loop that opened it
        model = ChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))
        agent = Agent(model, instructions="Use the tool.", tools=[get_weather])
        return (await agent.run(question)).output


def ask(question):
    return asyncio.run(_ask(question))
"""

SUITE = f"""
import pytest
import pai_app

pytestmark = [pytest.mark.seed({SEED}), pytest.mark.llm_params(temperature={TEMPERATURE})]

def test_agent(seeded_llm):
    assert pai_app.ask("What is the weather in Paris?")
    assert len(seeded_llm.calls) == 2 and seeded_llm.calls[0].output.startswith("tool_call ")
"""


def test_pydantic_ai_records_pins_replays_and_skips_on_a_backend_change(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(pai_app=APP, test_pai=SUITE)
    run_flow(suite, llm_server, monkeypatch, tests=1)
