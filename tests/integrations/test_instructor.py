"""instructor: structured output through a forced tool call, through seeded_llm."""

from __future__ import annotations

import pytest
from flow import SEED, TEMPERATURE, require, run_flow

from llmserver import LLMServer

require("instructor")

# instructor (1.17) registers its providers' modes lazily, on the first from_openai():
# inside an in-process inner run, pytester would then drop those modules when the run
# ends, and the next run would find the registry empty. Registered here, before any run.
import instructor  # noqa: E402
import openai  # noqa: E402

instructor.from_openai(openai.OpenAI(api_key="sk-not-used", base_url="http://127.0.0.1:9/v1"))

# A library's own defaults (llama-index's temperature=0.1) meet the markers: the
# override warning is expected here, not an error of the inner run.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")

APP = """
import instructor
import openai
from pydantic import BaseModel


class Film(BaseModel):
    title: str
    year: int


def film(question):
    client = instructor.from_openai(openai.OpenAI())
    return client.chat.completions.create(
        model="gpt-4o-mini", response_model=Film, messages=[{"role": "user", "content": question}]
    )
"""

SUITE = f"""
import pytest
import ins_app

pytestmark = [pytest.mark.seed({SEED}), pytest.mark.llm_params(temperature={TEMPERATURE})]

def test_film(seeded_llm):
    found = ins_app.film("A film about the sea?")
    assert found.title and isinstance(found.year, int)
    assert seeded_llm.calls[0].output.startswith("tool_call ")
"""


def test_instructor_records_pins_replays_and_skips_on_a_backend_change(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(ins_app=APP, test_ins=SUITE)
    run_flow(suite, llm_server, monkeypatch, tests=1)
