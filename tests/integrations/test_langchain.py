"""langchain-openai: a chat, a tool loop and streamed tool calls, through seeded_llm."""

from __future__ import annotations

import pytest
from flow import SEED, TEMPERATURE, require, run_flow

from llmserver import LLMServer

require("langchain")

# A library's own defaults (llama-index's temperature=0.1) meet the markers: the
# override warning is expected here, not an error of the inner run.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")

APP = """
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


@tool
def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return f"sunny in {city}"


def llm():
    return ChatOpenAI(model="gpt-4o-mini")  # key and base URL from the environment


def answer(question):
    return llm().invoke(question).content


def weather_loop(question):
    bound = llm().bind_tools([get_weather])
    messages = [HumanMessage(question)]
    first = bound.invoke(messages)
    messages.append(first)
    for call in first.tool_calls:
        messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    return bound.invoke(messages).content


def streamed_tool_call(question):
    chunks = list(llm().bind_tools([get_weather]).stream(question))
    message = chunks[0]
    for chunk in chunks[1:]:
        message = message + chunk
    return message.tool_calls
"""

SUITE = f"""
import pytest
import lc_app

pytestmark = [pytest.mark.seed({SEED}), pytest.mark.llm_params(temperature={TEMPERATURE})]

def test_answer(seeded_llm):
    assert lc_app.answer("Say something.")

def test_tool_loop(seeded_llm):
    assert lc_app.weather_loop("What is the weather in Paris?")
    assert len(seeded_llm.calls) == 2

def test_streamed_tool_call(seeded_llm):
    (call,) = lc_app.streamed_tool_call("Weather in Rome?")
    assert call["name"] == "get_weather" and call["args"]["city"]
    assert seeded_llm.calls[0].output.startswith("tool_call ")
"""


def test_langchain_records_pins_replays_and_skips_on_a_backend_change(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(lc_app=APP, test_lc=SUITE)
    run_flow(suite, llm_server, monkeypatch, tests=3)
