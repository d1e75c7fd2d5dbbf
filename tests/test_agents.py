"""Agents, tools and streams through the raw SDK: a multi-call flow is judged as one.

The same patterns the integrations tier runs through langchain, instructor,
pydantic-ai, llama-index and openai-agents, here without any library, so the
rules do not depend on one: a 2-round tool loop, parallel tool calls,
streamed tool calls, structured output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmserver import LLMServer
from written import files_of

pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproFingerprintWarning")

LOOP = """
import json

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

def test_loop(seeded_llm):
    client = seeded_llm.client
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    city = json.loads(call.function.arguments)["city"]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny in " + city},
    ]
    final = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content
"""


def snapshot_calls(root: Path, test: str) -> list[dict]:
    return yaml.safe_load(next((root / "__snapshots__").rglob(f"{test}.llm.yaml")).read_text())["calls"]


def test_a_tool_loop_is_recorded_numbered_and_replayed(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_loop=LOOP)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    calls = snapshot_calls(suite.path, "test_loop")
    assert len(calls) == 2
    assert calls[0]["output"].startswith("tool_call call_1: get_weather({")
    tool_message = calls[1]["request"]["messages"][2]
    assert tool_message["tool_call_id"] == "call_1"  # the server's random id, numbered
    first = files_of(suite.path)
    # Re-recording gets new random ids from the server: the snapshot does not change.
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
    assert {k: v for k, v in files_of(suite.path).items() if "__snapshots__" in k} == {
        k: v for k, v in first.items() if "__snapshots__" in k
    }
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)


def test_a_backend_change_in_a_tool_loop_skips_the_whole_test(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Call 0's tool arguments changed with the fingerprint, so call 1's history did too: one drift."""
    suite.makepyfile(test_loop=LOOP)
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)
    before = files_of(suite.path)
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "new backend"
    result = suite.runpytest("--seedrepro-mode=live", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * seedrepro: test_loop.py::test_loop: the backend changed and the output with it "
            "(call 0 (seed 1234): system_fingerprint fp_test_1 -> fp_test_2; after it, its consequences: "
            "call 1: request changed (messages)). "
            "Refresh with: pytest --seedrepro-mode=live --snapshot-update 'test_loop.py::test_loop'"
        ]
    )
    assert files_of(suite.path) == before
    # The same change under the same fingerprint is a regression of call 0.
    llm_server.fingerprint = "fp_test_1"
    result = suite.runpytest("--seedrepro-mode=live")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*call 0 (seed 1234, model m): the output changed but the fingerprint did not*"]
    )


TOOLS_TWO = """
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string"}, "hours": {"type": "integer"}}}}},
]
ASK = [{"role": "user", "content": "Weather and time in Paris?"}]

def test_whole(seeded_llm):
    seeded_llm.client.chat.completions.create(model="m", messages=ASK, tools=TOOLS)

def test_streamed(seeded_llm):
    for _ in seeded_llm.client.chat.completions.create(model="m", messages=ASK, tools=TOOLS, stream=True):
        pass
"""


def test_parallel_tool_calls_streamed_or_not_snapshot_the_same(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_tools=TOOLS_TWO)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    whole, streamed = (
        snapshot_calls(suite.path, "test_whole")[0],
        snapshot_calls(suite.path, "test_streamed")[0],
    )
    assert whole["output"] == streamed["output"]
    lines = whole["output"].splitlines()
    assert [line.split("(")[0] for line in lines] == [
        "tool_call call_1: get_weather",
        "tool_call call_2: get_time",
    ]
    suite.runpytest().assert_outcomes(passed=2)


STRUCTURED = """
def test_structured(seeded_llm):
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
              "required": ["title", "year"]}
    reply = seeded_llm.client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "A film?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": schema}},
    )
    assert reply.choices[0].message.content.startswith("{")
"""


def test_structured_output_is_snapshotted_and_drifts_like_text(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_structured=STRUCTURED)
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)
    output = snapshot_calls(suite.path, "test_structured")[0]["output"]
    assert '"title": ' in output and '"year": ' in output
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "new backend"
    suite.runpytest("--seedrepro-mode=live").assert_outcomes(skipped=1)
