"""llama-index: a completion and a tool call, through seeded_llm (it reads OPENAI_API_BASE)."""

from __future__ import annotations

import pytest
from flow import SEED, TEMPERATURE, require, run_flow

from llmserver import LLMServer

require("llama_index")

# A library's own defaults (llama-index's temperature=0.1) meet the markers: the
# override warning is expected here, not an error of the inner run.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")

APP = """
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI


def get_weather(city: str) -> str:
    \"\"\"The weather in a city.\"\"\"
    return f"sunny in {city}"


def llm():
    return OpenAI(model="gpt-4o-mini")  # key from OPENAI_API_KEY, base URL from OPENAI_API_BASE


def answer(question):
    return llm().complete(question).text


def tool_answer(question):
    return str(llm().predict_and_call([FunctionTool.from_defaults(fn=get_weather)], question))
"""

SUITE = f"""
import pytest
import li_app

pytestmark = [pytest.mark.seed({SEED}), pytest.mark.llm_params(temperature={TEMPERATURE})]

def test_answer(seeded_llm):
    assert li_app.answer("Say something.")

def test_tool(seeded_llm):
    assert "sunny in" in li_app.tool_answer("What is the weather in Paris?")
    assert seeded_llm.calls[0].output.startswith("tool_call ")
"""


def test_llama_index_records_pins_replays_and_skips_on_a_backend_change(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(li_app=APP, test_li=SUITE)
    run_flow(suite, llm_server, monkeypatch, tests=2)
