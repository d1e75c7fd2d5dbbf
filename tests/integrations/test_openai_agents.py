"""openai-agents: an agent with a function tool on the chat-completions model, through seeded_llm."""

from __future__ import annotations

import pytest
from flow import SEED, TEMPERATURE, require, run_flow

from llmserver import LLMServer

require("openai_agents")

# A library's own defaults (llama-index's temperature=0.1) meet the markers: the
# override warning is expected here, not an error of the inner run.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")

APP = """
import asyncio

import openai
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

set_tracing_disabled(True)  # tracing would send spans to the OpenAI API


@function_tool
def get_weather(city: str) -> str:
    return f"sunny in {city}"


async def _ask(question):
    async with openai.AsyncOpenAI() as client:  # closed on the loop that opened it
        model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
        agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather], model=model)
        return (await Runner.run(agent, question)).final_output


def ask(question):
    return asyncio.run(_ask(question))
"""

SUITE = f"""
import pytest
import oa_app

pytestmark = [pytest.mark.seed({SEED}), pytest.mark.llm_params(temperature={TEMPERATURE})]

def test_agent(seeded_llm):
    assert oa_app.ask("What is the weather in Paris?")
    assert len(seeded_llm.calls) == 2 and seeded_llm.calls[0].output.startswith("tool_call ")
"""


def test_openai_agents_records_pins_replays_and_skips_on_a_backend_change(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(oa_app=APP, test_oa=SUITE)
    run_flow(suite, llm_server, monkeypatch, tests=1)
