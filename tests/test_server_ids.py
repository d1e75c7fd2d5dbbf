"""Ids the server hands out, and every choice of an ``n > 1`` answer (DESIGN.md, "Ids").

Ids are not part of what a test asked: a conversation that sends them back
passes in every mode, snapshots number them only where they are ids, and
each replayed answer keeps an id of its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from llmserver import LLMServer
from written import files_of

pytestmark = pytest.mark.skipif(
    not hasattr(openai.OpenAI, "responses"), reason="this openai SDK has no Responses API"
)


def snapshot_calls(root: Path, test: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = yaml.safe_load(
        next((root / "__snapshots__").rglob(f"{test}.llm.yaml")).read_text()
    )["calls"]
    return calls


def snapshots_of(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in files_of(root).items() if k.startswith("__snapshots__")}


CONVERSATION = """
TOOLS = [{"type": "function", "name": "lookup", "parameters": {
    "type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}}]

def test_conversation(seeded_llm):
    client = seeded_llm.client
    first = client.responses.create(model="m", input="Where is my order?")
    client.responses.create(model="m", input="When will it come?", previous_response_id=first.id)
    history = [
        {"role": "user", "content": "Where is my order?"},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": "Thanks"},
    ]
    client.responses.create(model="m", input=history)
    asked = client.responses.create(model="m", input="Look up order 1042", tools=TOOLS)
    call = asked.output[0]
    answered = client.responses.create(
        model="m",
        previous_response_id=asked.id,
        input=[call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "shipped"}],
        tools=TOOLS,
    )
    assert answered.output_text
"""


def test_a_responses_conversation_passes_in_live_and_rerecord_and_replays_offline(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_conversation=CONVERSATION)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    calls = snapshot_calls(suite.path, "test_conversation")
    # The server's ids, numbered in order of appearance, only where they are ids.
    assert calls[1]["request"]["previous_response_id"] == "resp_1"
    assert calls[2]["request"]["input"][1]["id"] == "msg_1"
    assert calls[3]["output"].startswith("tool_call call_1: lookup({")
    passed_back, output = calls[4]["request"]["input"]
    assert calls[4]["request"]["previous_response_id"] == "resp_4"
    assert (passed_back["id"], passed_back["call_id"], output["call_id"]) == ("fc_1", "call_1", "call_1")
    snapshot = snapshots_of(suite.path)
    # Every run gets new ids from the server, and sends them back: still the same requests.
    suite.runpytest("--seedrepro-mode=live").assert_outcomes(passed=1)
    suite.runpytest("--seedrepro-mode=rerecord").assert_outcomes(passed=1)
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
    assert snapshots_of(suite.path) == snapshot
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)


CHOICES = """
ASK = [{"role": "user", "content": "Name a fruit"}]

def test_whole(seeded_llm):
    reply = seeded_llm.client.chat.completions.create(model="m", messages=ASK, n=2)
    assert len(reply.choices) == 2

def test_streamed(seeded_llm):
    texts = {}
    for chunk in seeded_llm.client.chat.completions.create(model="m", messages=ASK, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert len(texts) == 2

def test_legacy(seeded_llm):
    seeded_llm.client.completions.create(model="m", prompt="Name a fruit", n=2)

def test_one(seeded_llm):
    seeded_llm.complete("Name a fruit")
"""


def test_every_choice_of_an_n_2_answer_is_snapshotted_and_judged(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_choices=CHOICES)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=4)
    ask = [{"role": "user", "content": "Name a fruit"}]
    expected = [
        llm_server.expected_text(seed=1234, model="m", temperature=None, messages=ask, choice=index)
        for index in range(2)
    ]
    legacy = [
        llm_server.expected_text(seed=1234, model="m", temperature=None, prompt="Name a fruit", choice=index)
        for index in range(2)
    ]
    for test, texts in (("test_whole", expected), ("test_streamed", expected), ("test_legacy", legacy)):
        [call] = snapshot_calls(suite.path, test)
        assert call["choices"] == texts, test
        assert call["output"] == texts[0], test
    # An n = 1 call's snapshot has exactly the keys it always had.
    [one] = snapshot_calls(suite.path, "test_one")
    assert list(one) == ["endpoint", "system_fingerprint", "response_model", "request", "output"]
    suite.runpytest().assert_outcomes(passed=4)
    suite.runpytest("--seedrepro-mode=live").assert_outcomes(passed=4)
    # Choice 1 alone differs from the snapshot: a regression, whole or streamed.
    for test in ("test_whole", "test_streamed", "test_legacy"):
        path = next((suite.path / "__snapshots__").rglob(f"{test}.llm.yaml"))
        data = yaml.safe_load(path.read_text())
        data["calls"][0]["choices"][1] += " changed"
        path.write_text(yaml.safe_dump(data))
    before = files_of(suite.path)
    for mode in ("replay", "live"):
        result = suite.runpytest(f"--seedrepro-mode={mode}")
        result.assert_outcomes(passed=1, failed=3)
        result.stdout.fnmatch_lines(["*call 0 (seed 1234, model m): the output changed*", "    -* changed"])
    assert files_of(suite.path) == before


THREE_CALLS = """
import json

def test_three(seeded_llm):
    client = seeded_llm.client
    answers = [
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"question {i}"}])
        for i in range(2)
    ]
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "question 2"}], stream=True))
    with open("ids.jsonl", "a") as seen:
        seen.write(json.dumps({
            "ids": [a.id for a in answers] + [chunks[0].id],
            "stream_ids": sorted({c.id for c in chunks}),
            "created": [a.created for a in answers] + [chunks[0].created],
        }) + "\\n")
"""


def seen_ids(root: Path) -> list[dict[str, Any]]:
    runs = [json.loads(line) for line in (root / "ids.jsonl").read_text().splitlines()]
    (root / "ids.jsonl").unlink()
    return runs


def as_old_recordings_were(path: Path) -> None:
    """Rewrite a cassette as the plugin used to write it: every completion id a placeholder, created 0."""

    def old(body: str) -> str:
        def stable(text: str) -> str:
            data = json.loads(text)
            data["id"], data["created"] = "chatcmpl-recorded", 0
            return json.dumps(data, ensure_ascii=False)

        if body.lstrip().startswith("{"):
            return stable(body)
        return re.sub(r"^data: (\{.*)$", lambda m: "data: " + stable(m.group(1)), body, flags=re.M)

    cassette = yaml.safe_load(path.read_text())
    for interaction in cassette["interactions"]:
        interaction["response"]["body"]["string"] = old(interaction["response"]["body"]["string"])
    path.write_text(yaml.safe_dump(cassette))


def test_every_replayed_answer_has_its_own_stable_id(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_three=THREE_CALLS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    [recorded] = seen_ids(suite.path)
    llm_server.stop()
    for _ in range(2):
        suite.runpytest().assert_outcomes(passed=1)
    first, second = seen_ids(suite.path)
    assert first == second  # the ids are in the file: the same on every replay
    assert not set(first["ids"]) & set(recorded["ids"])  # numbered for the test, not the server's
    assert len(set(first["ids"])) == 3 and first["stream_ids"] == [first["ids"][2]]
    assert first["created"] == [0, 0, 0]  # stored as 0, as the snapshot never had it
    # A recording from before keeps the placeholder: replay gives each answer an id of its own,
    # the same on every run, and leaves the file as it is.
    [cassette] = (suite.path / "cassettes").rglob("*.yaml")
    as_old_recordings_were(cassette)
    assert cassette.read_text().count("chatcmpl-recorded") > 3
    before = files_of(suite.path)
    for _ in range(2):
        suite.runpytest().assert_outcomes(passed=1)
    first, second = seen_ids(suite.path)
    assert first["ids"] == second["ids"]
    assert len(set(first["ids"])) == 3 and "chatcmpl-recorded" not in first["ids"]
    assert first["stream_ids"] == [first["ids"][2]]  # a stream's chunks share their answer's id
    assert files_of(suite.path) == before


TOOL_LOOP = """
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}}}]

def test_tool_loop(seeded_llm):
    client = seeded_llm.client
    for stream in (False, True):
        # An id the app wrote itself is what the test asked: it stays as it is.
        messages = [{"role": "assistant", "tool_calls": [{"id": "call_mine", "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call_mine", "content": "unknown"},
                    {"role": "user", "content": f"Where is order 1042? stream={stream}"}]
        if stream:
            chunks = list(client.chat.completions.create(model="m", messages=messages, tools=TOOLS, stream=True))
            ids = [t.id for c in chunks for t in (c.choices[0].delta.tool_calls or []) if c.choices and t.id]
            calls = [{"id": ids[0], "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
        else:
            reply = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
            calls = [c.model_dump(exclude_none=True) for c in reply.choices[0].message.tool_calls]
        messages += [{"role": "assistant", "tool_calls": calls},
                     {"role": "tool", "tool_call_id": calls[0]["id"], "content": "shipped"}]
        final = client.chat.completions.create(model="m", messages=messages, tools=TOOLS)
        assert final.choices[0].message.content
"""

STREAMED_CONVERSATION = """
def test_streamed_conversation(seeded_llm):
    client = seeded_llm.client
    first = client.responses.create(model="m", input="Stream it", stream=True)
    done = [event for event in first if event.type == "response.completed"][0].response
    second = client.responses.create(model="m", input=[
        {"role": "user", "content": "Stream it"},
        *(item.model_dump(exclude_none=True) for item in done.output),
        {"role": "user", "content": "More"}], previous_response_id=done.id, stream=True)
    done = [event for event in second if event.type == "response.completed"][0].response
    client.responses.create(model="m", input="And then?", previous_response_id=done.id)
"""


def cassettes_of(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in files_of(root).items() if k.startswith("cassettes")}


def test_recordings_of_the_same_answers_are_the_same_bytes_and_replay_offline(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Re-recording unchanged answers rewrites nothing: the server's fresh ids are numbered per test."""
    suite.makepyfile(
        test_conversation=CONVERSATION,
        test_tool_loop=TOOL_LOOP,
        test_streamed_conversation=STREAMED_CONVERSATION,
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=3)
    first = files_of(suite.path)
    assert len(cassettes_of(suite.path)) == 3
    text = b"".join(cassettes_of(suite.path).values()).decode()
    assert "call_mine" in text  # an id the app made up is not the server's
    for _ in range(2):
        suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=3)
        assert files_of(suite.path) == first
    # A record run that replays everything writes the same bytes (or nothing).
    suite.runpytest("--seedrepro-mode=record").assert_outcomes(passed=3)
    assert files_of(suite.path) == first
    llm_server.stop()
    for _ in range(2):
        suite.runpytest().assert_outcomes(passed=3)
    assert files_of(suite.path) == first


IDS_SEEN = """
import json

def note(seen):
    with open("ids.jsonl", "a") as out:
        out.write(json.dumps(seen) + "\\n")

def ask(client, tag):
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": tag}])
    chunks = list(client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": tag + " streamed"}], stream=True))
    response = client.responses.create(model="m", input=tag)
    follow = client.responses.create(model="m", input=tag + " again", previous_response_id=response.id)
    return [chat.id, chunks[0].id, response.id, response.output[0].id, follow.id, follow.output[0].id]

def test_a(seeded_llm):
    note(ask(seeded_llm.client, "a"))

def test_b(seeded_llm):
    note(ask(seeded_llm.client, "b"))
"""


def test_replayed_ids_are_distinct_within_and_across_tests_and_the_same_on_every_replay(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_ids_seen=IDS_SEEN)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    live_a, live_b = seen_ids_lines(suite.path)
    llm_server.stop()
    runs = []
    for _ in range(2):
        suite.runpytest().assert_outcomes(passed=2)
        runs.append(seen_ids_lines(suite.path))
    assert runs[0] == runs[1]  # the same on every replay
    replay_a, replay_b = runs[0]
    assert len(set(replay_a + replay_b)) == 12  # each answer and item its own id, in both tests
    assert not set(replay_a + replay_b) & set(live_a + live_b)  # none is the server's
    for nodeid, ids in (("test_ids_seen.py::test_a", replay_a), ("test_ids_seen.py::test_b", replay_b)):
        test = hashlib.sha256(nodeid.encode()).hexdigest()[:12]
        assert all(test in each for each in ids), ids  # derived from the test's node id
        # The server's prefix, then the test's digest and a number.
        assert [each.split(test)[0] for each in ids] == [PREFIX.match(each).group() for each in live_a]


#: An id's prefix as the server wrote it: letters and a separator (``chatcmpl-``, ``resp_``).
PREFIX = re.compile(r"[A-Za-z]+[_-]")


def seen_ids_lines(root: Path) -> list[list[str]]:
    lines = [json.loads(line) for line in (root / "ids.jsonl").read_text().splitlines()]
    (root / "ids.jsonl").unlink()
    return lines
