"""Unit tier: the pure pieces, without pytester or a server."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_seedrepro import draws, judgement, markers, snapshots
from pytest_seedrepro.calls import Call, is_pinnable
from pytest_seedrepro.files import MAX_NAME_BYTES
from pytest_seedrepro.ids import stable_ids
from pytest_seedrepro.pinning import pin_body
from pytest_seedrepro.recording import _scrub_response, _stable_body, cassette_path, own_id


@pytest.mark.parametrize(
    ("body", "marker_seed", "params", "expected", "overridden"),
    [
        ({}, None, {}, {"seed": 9}, []),
        ({"seed": 5}, None, {}, {"seed": 5}, []),  # the default seed never replaces a chosen one
        ({"seed": None}, None, {}, {"seed": 9}, []),
        ({"seed": 5}, 3, {}, {"seed": 3}, ["seed"]),
        ({"seed": 3}, 3, {}, {"seed": 3}, []),
        ({"temperature": 0.7}, None, {"temperature": 0}, {"temperature": 0, "seed": 9}, ["temperature"]),
        ({"model": "a"}, 1, {"model": "b", "top_p": 1}, {"model": "b", "top_p": 1, "seed": 1}, ["model"]),
    ],
)
def test_pin_body(
    body: dict, marker_seed: int | None, params: dict, expected: dict, overridden: list
) -> None:
    pinned, changed = pin_body(body, marker_seed=marker_seed, default_seed=9, params=params)
    assert pinned == expected
    assert changed == overridden
    assert pinned is not body


@pytest.mark.parametrize(
    ("path", "pinnable"),
    [
        ("/chat/completions", True),
        ("/completions", True),
        ("/deployments/x/chat/completions", True),
        ("/responses", False),
        ("/embeddings", False),
        ("/completions/", True),
    ],
)
def test_pinnable_endpoints(path: str, pinnable: bool) -> None:
    assert is_pinnable(path) is pinnable


def test_cassette_path_is_per_test_and_filesystem_safe() -> None:
    path = cassette_path(
        Path("/p/tests/test_mod.py"), "tests/test_mod.py::TestX::test_y[a/b c?]", "cassettes"
    )
    assert path.parent == Path("/p/tests/cassettes/test_mod")
    # The sanitising changed the name, so it ends in a digest of the node id: no other id folds to it.
    assert re.fullmatch(r"TestX\.test_y\[a_b_c_\]-[0-9a-f]{8}\.yaml", path.name)
    assert (
        cassette_path(Path("/p/tests/test_mod.py"), "tests/test_mod.py::TestX::test_y[a/b c?]", "c").name
        == path.name
    )


@pytest.mark.parametrize(
    ("nodeid", "name"),
    [
        ("t.py::test_a", "test_a.yaml"),
        ("t.py::TestX::test_y[a_b-1.5,c=d+e]", "TestX.test_y[a_b-1.5,c=d+e].yaml"),
        ("t.py::test_ü[ß]", "test_ü[ß].yaml"),
    ],
)
def test_cassette_names_that_need_no_change_stay_as_they_were(nodeid: str, name: str) -> None:
    assert cassette_path(Path("/p/t.py"), nodeid, "cassettes").name == name


def test_cassette_names_that_fold_together_get_names_of_their_own() -> None:
    ids = ["a b", "a_b", "a?b", "a/b", "x" * 300, "x" * 299 + "y", "é" * 200, "é" * 199 + "e"]
    names = [cassette_path(Path("/p/t.py"), f"t.py::test[{i}]", "c").name for i in ids]
    assert len(set(names)) == len(ids)
    assert names[1] == "test[a_b].yaml"
    assert all(len(name.encode()) <= MAX_NAME_BYTES for name in names)
    # The suffix depends on the test's part of the node id, not on where pytest's rootdir is.
    assert cassette_path(Path("/q/t.py"), "sub/t.py::test[a b]", "c").name == names[0]


def test_error_responses_are_never_recorded() -> None:
    for status in (408, 409, 429, 500, 503):
        assert _scrub_response({"status": {"code": status}, "headers": {}, "body": {"string": b"{}"}}) is None


def test_recorded_response_keeps_only_content_type_and_the_servers_ids() -> None:
    body = json.dumps(
        {"id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "x": 1}
    ).encode()
    response = {
        "status": {"code": 200},
        "headers": {
            "Content-Type": ["application/json"],
            "Set-Cookie": ["a=b"],
            "openai-organization": ["org"],
        },
        "body": {"string": body},
    }
    scrubbed = _scrub_response(response)
    assert scrubbed is not None
    assert list(scrubbed["headers"]) == ["Content-Type"]
    # The id may come back in a later request: kept as it came here, numbered when the recording is written.
    assert json.loads(scrubbed["body"]["string"]) == {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1700000000,
        "x": 1,
    }


def test_stable_body_drops_llama_server_timings() -> None:
    body = json.dumps({"id": "x", "object": "text_completion", "created": 3, "timings": {"prompt_ms": 91.7}})
    assert "timings" not in json.loads(_stable_body(body.encode()))


def test_stable_body_leaves_responses_api_ids_alone() -> None:
    body = json.dumps({"id": "resp_1", "object": "response", "created_at": 5}).encode()
    assert _stable_body(body) == body


def test_stable_body_in_a_stream() -> None:
    chunk = {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 7,
        "choices": [],
        "timings": {},
    }
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    lines = _stable_body(stream).decode().split("\n")
    assert json.loads(lines[0][6:]) == {k: v for k, v in chunk.items() if k != "timings"}
    assert lines[2] == "data: [DONE]"


def test_an_old_recordings_placeholder_id_is_replaced_by_one_of_the_tests_own() -> None:
    chunk = '{"id": "chatcmpl-recorded", "object": "chat.completion.chunk", "choices": []}'
    body = f"data: {chunk}\n\ndata: {chunk}\n\ndata: [DONE]\n\n".encode()
    first, second = own_id(body, "t.py::test_a", 0), own_id(body, "t.py::test_a", 1)
    ids = [json.loads(line[6:])["id"] for line in first.decode().splitlines() if line.startswith("data: {")]
    assert len(ids) == 2 and ids[0] == ids[1] != "chatcmpl-recorded"  # one answer, one id
    assert ids[0].startswith("chatcmpl-")
    assert own_id(body, "t.py::test_a", 0) == first  # the same on every run
    assert len({first, second, own_id(body, "t.py::test_b", 0)}) == 3  # distinct per answer and test
    legacy = b'{"id": "cmpl-recorded", "object": "text_completion", "choices": []}'
    assert json.loads(own_id(legacy, "t.py::test_a", 2))["id"].startswith("cmpl-")
    # The placeholder's words inside a text are not an id.
    text = b'{"id": "x", "choices": [{"text": "\\"id\\": \\"chatcmpl-recorded\\""}]}'
    assert own_id(text, "t.py::test_a", 0) == text


AWKWARD_OUTPUTS = [
    "",
    "one line",
    "two\nlines",
    "trailing newline\n",
    "  leading spaces\n  kept",
    "trailing spaces   \nhere  ",
    "tabs\tinside\n\tand leading",
    "unicode: café 日本語 🙂",
    "# not a comment\n- not a list\nkey: not a map",
    "'quotes' and \"double\"",
    "\n\nstarts with blank lines",
    "windows\r\nline endings",
]


@pytest.mark.parametrize("output", AWKWARD_OUTPUTS)
def test_snapshot_round_trips_any_output(output: str, tmp_path: Path) -> None:
    calls = [
        {
            "endpoint": "/chat/completions",
            "system_fingerprint": None,
            "request": {"seed": 1},
            "output": output,
        }
    ]
    text = snapshots.render("t.py::t", calls)
    # Written and read back the way the extension and the verdict do (text mode, universal newlines).
    target = tmp_path / "s.llm.yaml"
    with open(target, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    assert snapshots.parse(target.read_text(encoding="utf-8"), str(target)) == calls


def test_multi_line_output_is_one_line_per_line() -> None:
    text = snapshots.render("t.py::t", [{"output": "alpha beta\ngamma\ndelta"}])
    assert "\n    alpha beta\n    gamma\n    delta\n" in text


@pytest.mark.parametrize("text", ["calls: [", "[]", "calls: 3", "calls:\n- {request: {}}\n"])
def test_parse_rejects_what_is_not_a_snapshot(text: str) -> None:
    with pytest.raises(snapshots.CorruptSnapshot, match=r"^where\.llm\.yaml: "):
        snapshots.parse(text, "where.llm.yaml")


@pytest.mark.parametrize("output", [o for o in AWKWARD_OUTPUTS if "\n" in o and "\r" not in o])
def test_every_multi_line_output_is_a_literal_block(output: str) -> None:
    text = snapshots.render("t.py::t", [{"output": output}])
    assert text.split("output:", 1)[1].lstrip(" ").startswith("|"), text


def test_snapshot_round_trip_and_blocks_on_random_text() -> None:
    """Seeded random text over the characters YAML is fussy about: exact round trips, blocks when possible."""
    import random

    rnd = random.Random(20261125)
    alphabet = " \t\n-:#|>'\"xé中\u00a0\ud83d"
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 14)))
        stored = snapshots.storable(text)
        rendered = snapshots.render("t.py::t", [{"output": stored}])
        assert snapshots.parse(rendered, "x")[0]["output"] == stored, repr(text)
        rendered.encode("utf-8")  # always writable
        if "\n" in text:
            assert rendered.split("output:", 1)[1].lstrip(" ").startswith("|"), repr(text)


def test_a_lone_surrogate_is_spelled_out_the_same_way_on_both_sides() -> None:
    assert snapshots.storable({"output": "cut \ud83d", "request": {"m": ["\udc00"]}}) == {
        "output": "cut \\ud83d",
        "request": {"m": ["\\udc00"]},
    }


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("calls:\n- {request: 'a string', output: x}\n", "call 0: 'request' should be a mapping, got str"),
        ("calls:\n- {output: [1, 2]}\n", "call 0: 'output' should be text or null, got list"),
        ("calls:\n- {output: x, status: '404'}\n", "call 0: 'status' should be an integer, got str"),
        ("calls:\n- 3\n", "call 0 is not a mapping with an 'output'"),
    ],
)
def test_parse_names_a_wrong_typed_field(text: str, fault: str) -> None:
    with pytest.raises(snapshots.CorruptSnapshot) as raised:
        snapshots.parse(text, "s.llm.yaml")
    assert str(raised.value).startswith(f"s.llm.yaml: {fault}")


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("api-key", True),
        ("subscription-key", True),
        ("Ocp-Apim-Subscription-Key", True),
        ("apikey", True),
        ("access_key", True),
        ("access_token", True),
        ("X-Amz-Signature", True),
        ("sig", True),
        ("sessionToken", True),
        ("password", True),
        ("key", True),
        ("token", True),
        ("signature", True),
        ("secret", True),
        ("client_secret", True),
        ("apiKey", True),
        ("APIKey", True),
        ("x-api-key", True),
        ("X-Amz-Credential", True),
        ("X-Amz-Security-Token", True),
        ("auth", True),
        ("auth_token", True),
        ("accesstoken", True),
        ("refresh_token", True),
        ("passwd", True),
        ("session_id", True),
        ("sessionid", True),
        ("api-version", False),
        ("limit", False),
        ("model", False),
        ("max_tokens", False),
        ("maxTokens", False),
        ("author", False),
        ("keywords", False),
        ("monkey", False),
        ("signal", False),
        ("design", False),
        ("subscription", False),
        ("country_code", False),
        ("code", False),  # an OAuth code never travels with an API call; a language code does
    ],
)
def test_credential_like_query_parameters(name: str, dropped: bool) -> None:
    from pytest_seedrepro.recording import is_credential_name

    assert is_credential_name(name) is dropped


@pytest.mark.parametrize(
    ("status", "recorded"),
    [
        (400, True),
        (404, True),
        (422, True),
        (401, False),
        (403, False),
        (407, False),
        (408, False),
        (409, False),
        (429, False),
        (500, False),
        (503, False),
    ],
)
def test_which_error_statuses_are_recorded(status: int, recorded: bool) -> None:
    from pytest_seedrepro.calls import is_recorded_error

    response = {"status": {"code": status}, "headers": {}, "body": {"string": b'{"error": {"message": "m"}}'}}
    assert (_scrub_response(response) is not None) is recorded
    assert is_recorded_error(status) is recorded


def test_a_stream_that_does_not_end_is_no_answer() -> None:
    from pytest_seedrepro.answers import fill_from_sse as _fill_from_sse

    chunk = {"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": None}]}
    cut = Call(0, "/chat/completions", {}, True, True)
    _fill_from_sse(cut, f"data: {json.dumps(chunk)}\n\n".encode(), ended=True)
    assert cut.output is None and cut.error is not None and "without its end" in cut.error
    whole = Call(0, "/chat/completions", {}, True, True)
    _fill_from_sse(whole, f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode(), ended=True)
    assert (whole.output, whole.error) == ("half", None)
    closed_early = Call(0, "/chat/completions", {}, True, True)  # the consumer stopped reading: not an error
    _fill_from_sse(closed_early, f"data: {json.dumps(chunk)}\n\n".encode(), ended=False)
    assert (closed_early.output, closed_early.error) == ("half", None)


# The verdict's rule on plain data --------------------------------------------------------------


def entry(
    output: str, *, fp: str | None = "fp_1", seed: int = 1, messages: str = "hi", model: str = "m"
) -> dict:
    return {
        "endpoint": "/chat/completions",
        "system_fingerprint": fp,
        "response_model": model,
        "request": {"seed": seed, "messages": messages},
        "output": output,
    }


def test_first_divergence_none_when_everything_agrees() -> None:
    from pytest_seedrepro.judgement import judge

    found = judge([entry("a"), entry("b")], [entry("a"), entry("b")])
    assert found.divergence is None and not found.noted and not found.fails


def test_first_divergence_a_new_fingerprint_with_the_same_output_is_only_noted() -> None:
    from pytest_seedrepro.judgement import judge

    found = judge([entry("a"), entry("b")], [entry("a", fp="fp_2"), entry("b", fp="fp_2")])
    assert found.divergence is None
    assert [(c.index, c.old, c.new, c.outcome) for c in found.noted] == [
        (0, "fp_1", "fp_2", "same output"),
        (1, "fp_1", "fp_2", "same output"),
    ]


@pytest.mark.parametrize(
    ("current", "kind", "at"),
    [
        # call 0 diverges, each way
        ([entry("a", seed=2), entry("b")], "request", 0),
        ([entry("A"), entry("b")], "output", 0),
        ([entry("A", fp=None), entry("b")], "output", 0),  # no fingerprint: cannot blame the backend
        ([entry("A", fp="fp_2"), entry("b")], "backend", 0),
        # call 1 diverges after an equal call 0
        ([entry("a"), entry("b", messages="other")], "request", 1),
        ([entry("a"), entry("B")], "output", 1),
        ([entry("a"), entry("B", fp="fp_2")], "backend", 1),
        # a different number of calls after equal ones
        ([entry("a")], "count", None),
        ([entry("a"), entry("b"), entry("c")], "count", None),
    ],
)
def test_first_divergence_decides(current: list[dict], kind: str, at: int | None) -> None:
    from pytest_seedrepro.judgement import judge

    found = judge([entry("a"), entry("b")], current)
    assert found.divergence is not None
    assert (found.divergence.kind, found.divergence.position) == (kind, at)
    assert found.fails is (kind != "backend")


def test_after_a_backend_change_the_rest_is_its_consequence_not_judged() -> None:
    """A tool loop: call 0's tool arguments changed with the backend, so call 1's history did too."""
    from pytest_seedrepro.judgement import judge

    stored = [entry("call tool(x=1)"), entry("the answer is 1", messages="tool said 1")]
    current = [
        entry("call tool(x=2)", fp="fp_2"),
        entry("the answer is 2", fp="fp_2", messages="tool said 2"),
        entry("and one more round", fp="fp_2", messages="again"),
    ]
    found = judge(stored, current)
    assert found.divergence is not None and found.divergence.kind == "backend"
    assert found.divergence.change is not None and (
        found.divergence.change.old,
        found.divergence.change.new,
    ) == ("fp_1", "fp_2")
    assert found.consequences == ["call 1: request changed (messages)", "1 call(s) more than the snapshot"]
    assert not found.fails


def test_a_regression_before_a_backend_change_still_fails() -> None:
    from pytest_seedrepro.judgement import judge

    found = judge([entry("a"), entry("b")], [entry("A"), entry("B", fp="fp_2")])
    assert found.divergence is not None and found.divergence.kind == "output" and found.fails


def test_the_compare_hook_decides_output_equality() -> None:
    from pytest_seedrepro.judgement import judge

    found = judge(
        [entry("a")],
        [entry("A")],
        same_output=lambda old, new: old["output"].lower() == new["output"].lower(),
    )
    assert found.divergence is None


def test_calls_from_threads_pair_by_request_whatever_their_order() -> None:
    from pytest_seedrepro.judgement import judge

    stored = [entry(f"answer {i}", messages=f"q{i}") for i in range(4)]
    current = [entry(f"answer {i}", messages=f"q{i}") for i in (2, 0, 3, 1)]
    assert judge(stored, current, threaded=True).divergence is None
    found = judge(stored, current, threaded=False)
    assert found.divergence is not None and found.divergence.kind == "request"


def test_summary_data_survives_the_trip_from_an_xdist_worker(pytester: pytest.Pytester) -> None:
    """The summary rides on the report; pytest's own serialisation (what xdist uses) must keep it."""
    config = pytester.parseconfig()
    report = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "passed", None, "call", [])
    report.seedrepro = {"replayed": 2, "changes": [{"old": "a", "new": "b", "outcome": "skip"}]}  # type: ignore[attr-defined]
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    json.dumps(data)  # what crosses the wire is JSON
    back = config.hook.pytest_report_from_serializable(config=config, data=data)
    assert back.seedrepro == report.seedrepro  # type: ignore[attr-defined]


# Reading answers: the same output streamed or not -----------------------------------------------

TOOL_MESSAGE = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_Ab1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_Cd2",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ],
}


def _whole(message: dict) -> bytes:
    return json.dumps(
        {"object": "chat.completion", "model": "m", "choices": [{"index": 0, "message": message}]}
    ).encode()


def _stream(deltas: list[dict], finish: str = "tool_calls") -> bytes:
    chunks = [
        {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": d, "finish_reason": None}],
        }
        for d in deltas
    ]
    chunks.append(
        {
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
        }
    )
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"


def _read(raw: bytes, *, stream: bool, endpoint: str = "/chat/completions") -> Call:
    from pytest_seedrepro.answers import fill_from_body, fill_from_sse

    call = Call(0, endpoint, {}, True, stream)
    if stream:
        fill_from_sse(call, raw, ended=True)
    else:
        fill_from_body(call, raw, "application/json")
    return call


def test_parallel_tool_calls_streamed_in_pieces_read_like_the_whole_answer() -> None:
    whole = _read(_whole(TOOL_MESSAGE), stream=False)
    streamed = _read(
        _stream(
            [
                {"role": "assistant", "content": None},
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_Ab1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_Cd2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz"'},
                        }
                    ]
                },
                {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
                {"tool_calls": [{"index": 1, "function": {"arguments": ': "CET"}'}}]},
            ]
        ),
        stream=True,
    )
    assert whole.error is None and streamed.error is None
    assert (
        streamed.output
        == whole.output
        == ('tool_call call_Ab1: get_weather({"city": "Paris"})\ntool_call call_Cd2: get_time({"tz": "CET"})')
    )
    assert streamed.tool_call_ids == whole.tool_call_ids == ("call_Ab1", "call_Cd2")


def test_a_changed_tool_argument_is_a_changed_output() -> None:
    changed = json.loads(json.dumps(TOOL_MESSAGE))
    changed["tool_calls"][0]["function"]["arguments"] = '{"city": "Lyon"}'
    assert _read(_whole(changed), stream=False).output != _read(_whole(TOOL_MESSAGE), stream=False).output


def test_legacy_function_call_and_refusal_streamed_or_not() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "lookup", "arguments": '{"q": 1}'},
    }
    streamed = _read(
        _stream(
            [
                {"function_call": {"name": "lookup", "arguments": '{"q"'}},
                {"function_call": {"arguments": ": 1}"}},
            ],
            "function_call",
        ),
        stream=True,
    )
    assert streamed.output == _read(_whole(message), stream=False).output == 'function_call: lookup({"q": 1})'
    refusal = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
    streamed = _read(_stream([{"refusal": "I cannot "}, {"refusal": "help with that."}], "stop"), stream=True)
    assert (
        streamed.output == _read(_whole(refusal), stream=False).output == "refusal: I cannot help with that."
    )


def test_text_and_a_tool_call_in_one_answer_keep_both() -> None:
    message = {**TOOL_MESSAGE, "content": "Let me look.", "tool_calls": TOOL_MESSAGE["tool_calls"][:1]}
    assert (
        _read(_whole(message), stream=False).output
        == 'Let me look.\ntool_call call_Ab1: get_weather({"city": "Paris"})'
    )


def test_responses_api_output_items_whole_and_streamed() -> None:
    response = {
        "object": "response",
        "model": "m",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "id": "fc_9",
                "call_id": "call_Zz",
                "name": "search",
                "arguments": '{"q": "x"}',
            },
            {"type": "message", "content": [{"type": "output_text", "text": "Found it."}]},
        ],
    }
    whole = _read(json.dumps(response).encode(), stream=False, endpoint="/responses")
    events = [
        {"type": "response.created", "response": {**response, "status": "in_progress", "output": []}},
        {"type": "response.output_text.delta", "delta": "Found it."},
        {"type": "response.completed", "response": response},
    ]
    raw = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()
    streamed = _read(raw, stream=True, endpoint="/responses")
    assert whole.output == streamed.output == 'tool_call call_Zz: search({"q": "x"})\nFound it.'
    assert whole.tool_call_ids == streamed.tool_call_ids == ("call_Zz",)
    assert whole.item_ids == streamed.item_ids == ("rs_1", "fc_9")
    cut = _read(raw.rsplit(b"event: response.completed", 1)[0], stream=True, endpoint="/responses")
    assert cut.output is None and "response.completed" in (cut.error or "")


def test_tool_call_ids_are_numbered_in_order_of_appearance_everywhere() -> None:
    entries = [
        {
            "request": {"messages": [{"role": "user", "content": "hi"}]},
            "output": "tool_call call_Zq9: f({})\ntool_call call_1: g({})",
        },
        {
            "request": {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "call_Zq9"}, {"id": "call_1"}]},
                    {"role": "tool", "tool_call_id": "call_Zq9", "content": "42"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "43"},
                ]
            },
            "output": "done",
        },
    ]
    numbered = snapshots.number_ids(entries, ["call_Zq9", "call_1"], [])
    assert numbered[0]["output"] == "tool_call call_1: f({})\ntool_call call_2: g({})"
    messages = numbered[1]["request"]["messages"]
    assert [m.get("tool_call_id") for m in messages[1:]] == ["call_1", "call_2"]
    assert messages[0]["tool_calls"] == [{"id": "call_1"}, {"id": "call_2"}]
    # Two recordings of the same loop with other random ids give the same snapshot.
    other = json.loads(
        json.dumps(entries)
        .replace("call_Zq9", "call_Xy7")
        .replace('"call_1"', '"call_Q"')
        .replace("call_1:", "call_Q:")
        .replace('call_1"', 'call_Q"')
    )
    assert snapshots.number_ids(other, ["call_Xy7", "call_Q"], []) == numbered


def test_cassette_serializer_writes_with_the_pure_emitter_and_reads_back_binary_bodies() -> None:
    import yaml
    from vcr.serializers import yamlserializer

    from pytest_seedrepro.recording import CassetteSerializer

    data = {
        "interactions": [
            {
                "request": {"body": b"\x00\xff--boundary\r\n" * 9},
                "response": {"body": {"string": "Grüße \r\n" * 20}},
            }
        ],
        "version": 1,
    }
    text = CassetteSerializer.serialize(data)
    assert text == yaml.dump(data, Dumper=yaml.Dumper)
    assert CassetteSerializer.deserialize(text) == data
    if yaml.__with_libyaml__:  # the reason for it: vcrpy's own dumper is libyaml's here, and folds otherwise
        assert yamlserializer.serialize(data) != text


def test_multipart_boundary_is_fixed_in_header_and_delimiters_only() -> None:
    from vcr.request import Request

    from pytest_seedrepro.recording import MULTIPART_BOUNDARY, _scrub_request

    def upload(boundary: str, content: bytes, quoted: bool = False) -> Request:
        value = f'"{boundary}"' if quoted else boundary
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'.encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={value}", "Authorization": "Bearer k"}
        return Request("POST", "http://h/v1/files", body, headers)

    content = b"\x00\xff x--abc123 --abc123\n--abc123"  # the old boundary inside the file, never on a delimiter line
    first = _scrub_request(upload("abc123", content))
    second = _scrub_request(upload("f00d" * 8, content, quoted=True))
    assert first.body == second.body and first.headers == second.headers
    assert first.headers["content-type"] == f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"
    assert content in first.body and first.body.startswith(f"--{MULTIPART_BOUNDARY}\r\n".encode())
    assert _scrub_request(first).body == first.body  # vcrpy filters a request more than once


def test_ids_are_numbered_only_in_the_fields_that_carry_them() -> None:
    """Issue 16, item 4: a server id "1" must not touch the 1s of the text, nor an empty id insert one."""
    text = "Where is order 1042? It costs 15 euros, ref A1B."
    entries = [
        {
            "request": {"messages": [{"role": "user", "content": text}], "seed": 1},
            "output": f'{text}\ntool_call 1: lookup({{"order": "1042"}})\ntool_call : other(1)',
            "choices": [f"{text}\ntool_call 1: lookup(1)", "tool_call 1 is 1"],
        },
        {
            "request": {
                "messages": [
                    {"role": "user", "content": text},
                    {
                        "role": "assistant",
                        "content": "1",
                        "tool_calls": [{"id": "1", "function": {"name": "1"}}],
                    },
                    {"role": "tool", "tool_call_id": "1", "content": "1 is 1"},
                ]
            },
            "output": text,
        },
    ]
    numbered = snapshots.number_ids(entries, ["1", ""], [])
    assert numbered[0]["request"] == entries[0]["request"]
    assert (
        numbered[0]["output"]
        == f'{text}\ntool_call call_1: lookup({{"order": "1042"}})\ntool_call : other(1)'
    )
    assert numbered[0]["choices"] == [f"{text}\ntool_call call_1: lookup(1)", "tool_call 1 is 1"]
    user, assistant, tool = numbered[1]["request"]["messages"]
    assert user == {"role": "user", "content": text}
    assert assistant == {
        "role": "assistant",
        "content": "1",
        "tool_calls": [{"id": "call_1", "function": {"name": "1"}}],
    }
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "1 is 1"}
    assert numbered[1]["output"] == text
    # Only empty ids: nothing to number, nothing changes.
    assert snapshots.number_ids(entries, [""], [""]) == entries


def test_responses_api_ids_are_numbered_by_their_prefix() -> None:
    entries = [
        {"request": {"input": "hi"}, "output": "tool_call call_Ab: f({})"},
        {
            "request": {
                "previous_response_id": "resp_X",
                "input": [
                    {
                        "type": "message",
                        "id": "msg_Y",
                        "content": [{"type": "output_text", "text": "resp_X msg_Y"}],
                    },
                    {"type": "function_call", "id": "fc_Z", "call_id": "call_Ab", "name": "f"},
                    {"type": "function_call_output", "call_id": "call_Ab", "output": "call_Ab"},
                    {"type": "item_reference", "id": "rs_W"},
                    {"type": "x", "item_id": "msg_Y"},
                ],
            },
            "output": "done",
        },
    ]
    numbered = snapshots.number_ids(entries, ["call_Ab"], ["resp_X", "msg_Y", "fc_Z", "resp_V", "rs_W", "7"])
    request = numbered[1]["request"]
    assert numbered[0]["output"] == "tool_call call_1: f({})"
    assert request["previous_response_id"] == "resp_1"
    assert [
        {k: v for k, v in item.items() if k in ("id", "call_id", "item_id")} for item in request["input"]
    ] == [
        {"id": "msg_1"},
        {"id": "fc_1", "call_id": "call_1"},
        {"call_id": "call_1"},
        {"id": "rs_1"},
        {"item_id": "msg_1"},
    ]
    # Ids inside other text stay as they are.
    assert request["input"][0]["content"] == entries[1]["request"]["input"][0]["content"]
    assert request["input"][2]["output"] == "call_Ab"


def test_every_choice_is_read_whole_and_streamed() -> None:
    texts = ["one two", "three four"]
    whole = {
        "object": "chat.completion",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ],
    }
    read_whole = _read(json.dumps(whole).encode(), stream=False)
    chunks = [
        {"object": "chat.completion.chunk", "choices": [{"index": i, "delta": {"content": piece}}]}
        for pieces in zip(*(t.split(" ") for t in texts), strict=True)
        for i, piece in enumerate(pieces)
    ]
    chunks += [
        {"object": "chat.completion.chunk", "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]}
        for i in range(2)
    ]
    raw = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode()
    read_stream = _read(raw, stream=True)
    assert read_whole.outputs == ("one two", "three four") and read_whole.output == "one two"
    assert read_stream.outputs == ("onetwo", "threefour") and read_stream.output == "onetwo"
    # Choice 1 cut before its end: the answer is cut, whatever choice 0 says.
    cut = _read("".join(f"data: {json.dumps(c)}\n\n" for c in chunks[:-1]).encode(), stream=True)
    assert cut.output is None and "cut" in (cut.error or "")
    one = {**whole, "choices": whole["choices"][:1]}
    assert _read(json.dumps(one).encode(), stream=False).outputs == ()


def test_judge_compares_every_choice() -> None:
    def entry(*texts: str) -> dict[str, Any]:
        return {
            "request": {"n": len(texts)},
            "system_fingerprint": "fp",
            "output": texts[0],
            "choices": list(texts),
        }

    assert judgement.judge([entry("a", "b")], [entry("a", "b")]).divergence is None
    found = judgement.judge([entry("a", "b")], [entry("a", "c")]).divergence
    assert found is not None and found.kind == "output"
    assert "choice 1:" in found.message and "-b" in found.message and "+c" in found.message
    asked: list[tuple[str, str]] = []

    def same(old: dict[str, Any], new: dict[str, Any]) -> bool:
        return judgement.same_answers(old, new, lambda a, b: asked.append((a, b)) or True)

    assert judgement.judge([entry("a", "b")], [entry("a", "c")], same_output=same).divergence is None
    assert asked == [("a", "a"), ("b", "c")]  # the compare hook, once per choice


# Recordings: the server's ids numbered per test (ids.stable_ids) ------------------------------------

NODE = "tests/test_app.py::test_loop"
TEST = hashlib.sha256(NODE.encode()).hexdigest()[:12]
CHAT = "/v1/chat/completions"


def _compact(data: Any) -> bytes:
    """A request body as the SDK sends it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _chat_answer(
    answer_id: str, tool_ids: tuple[str, ...] = (), text: str = "Order 1042, ref call_Zq9"
) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_ids:
        message["tool_calls"] = [
            {"id": t, "type": "function", "function": {"name": "lookup", "arguments": "{}"}} for t in tool_ids
        ]
    return json.dumps(
        {
            "id": answer_id,
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    ).encode()


def _tool_loop(first: str, call: str, second: str) -> list[tuple[str, Any, Any]]:
    user = {"role": "user", "content": "Where is order 1042?"}
    # An id the app made up itself (a few-shot example) is part of what the test asked.
    example = [
        {"role": "assistant", "tool_calls": [{"id": "call_mine", "type": "function", "function": {}}]},
        {"role": "tool", "tool_call_id": "call_mine", "content": "unknown"},
    ]
    asked = {"model": "m", "messages": [*example, user]}
    answered = {
        "model": "m",
        "messages": [
            *example,
            user,
            {"role": "assistant", "tool_calls": [{"id": call, "type": "function", "function": {}}]},
            {"role": "tool", "tool_call_id": call, "content": "call_Zq9 shipped"},  # text, not an id
        ],
    }
    return [
        (CHAT, _compact(asked), _chat_answer(first, (call,))),
        (CHAT, _compact(answered), _chat_answer(second)),
    ]


def test_stable_ids_number_a_tool_loop_in_requests_and_responses() -> None:
    exchanges = _tool_loop("chatcmpl-A1", "call_Zq9", "chatcmpl-B2")
    (_, asked, first), (_, answered, second) = stable_ids(exchanges, NODE)
    assert asked is exchanges[0][1]  # no id of the server's in it: kept byte for byte
    first_data = json.loads(first)
    message = first_data["choices"][0]["message"]
    assert first_data["id"] == f"chatcmpl-{TEST}-1"
    assert message["tool_calls"][0]["id"] == f"call_{TEST}-2"
    assert message["content"] == "Order 1042, ref call_Zq9"  # an id inside text is text
    assert first_data["created"] == 0
    request = json.loads(answered)
    assert answered == _compact(request)  # written the way the SDK sends it
    example, _, _, assistant, tool = request["messages"]
    assert example["tool_calls"][0]["id"] == "call_mine"
    assert assistant["tool_calls"][0]["id"] == tool["tool_call_id"] == f"call_{TEST}-2"
    assert tool["content"] == "call_Zq9 shipped"
    assert json.loads(second)["id"] == f"chatcmpl-{TEST}-3"
    # The same answers with other server ids: the same bytes.
    again = stable_ids(_tool_loop("chatcmpl-X", "call_Y", "chatcmpl-Z"), NODE)
    assert again == [(CHAT, asked, first), (CHAT, answered, second)]
    # Another test numbers the same answers with ids of its own.
    other = stable_ids(exchanges, NODE + "[2]")
    assert json.loads(other[0][2])["id"] != first_data["id"]


def test_stable_ids_are_idempotent() -> None:
    once = stable_ids(_tool_loop("chatcmpl-A1", "call_Zq9", "chatcmpl-B2"), NODE)
    twice = stable_ids(once, NODE)
    assert twice == once
    assert all(
        a is b for pair, again in zip(once, twice, strict=True) for a, b in zip(pair, again, strict=True)
    )  # nothing rewritten


def test_stable_ids_number_a_responses_conversation() -> None:
    def answer(response_id: str, previous: str | None, output: list[dict[str, Any]]) -> bytes:
        return json.dumps(
            {
                "id": response_id,
                "object": "response",
                "created_at": 1_700_000_000,
                "completed_at": 1_700_000_001,
                "previous_response_id": previous,
                "output": output,
            }
        ).encode()

    call = {"type": "function_call", "id": "fc_Z", "call_id": "call_Ab", "name": "f", "arguments": "{}"}
    passed_back = {
        "previous_response_id": "resp_X",
        "input": [
            call,
            {"type": "function_call_output", "call_id": "call_Ab", "output": "resp_X"},
            {"type": "item_reference", "id": "fc_Z"},
            {"type": "message", "role": "user", "content": "fc_Z"},
        ],
    }
    message = {"type": "message", "id": "msg_W", "content": [{"type": "output_text", "text": "resp_X"}]}
    exchanges = [
        ("/v1/responses", _compact({"input": "hi"}), answer("resp_X", None, [call])),
        ("/v1/responses", _compact(passed_back), answer("resp_Y", "resp_X", [message])),
    ]
    (_, _, first), (_, request, second) = stable_ids(exchanges, NODE)
    first_data, second_data = json.loads(first), json.loads(second)
    assert first_data["id"] == f"resp_{TEST}-1"
    assert first_data["output"][0]["id"] == f"fc_{TEST}-2"
    assert first_data["output"][0]["call_id"] == f"call_{TEST}-3"
    assert (first_data["created_at"], first_data["completed_at"]) == (0, 0)
    sent = json.loads(request)
    assert sent["previous_response_id"] == second_data["previous_response_id"] == f"resp_{TEST}-1"
    assert sent["input"][0] == first_data["output"][0]
    assert sent["input"][1] == {
        "type": "function_call_output",
        "call_id": f"call_{TEST}-3",
        "output": "resp_X",
    }
    assert sent["input"][2]["id"] == f"fc_{TEST}-2"
    assert sent["input"][3] == passed_back["input"][3]
    assert second_data["id"] == f"resp_{TEST}-4"
    assert second_data["output"][0]["id"] == f"msg_{TEST}-5"
    assert second_data["output"][0]["content"] == message["content"]


def test_stable_ids_in_streams() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {"id": "chatcmpl-S", "object": "chat.completion.chunk", "created": 9, "choices": []}
        if finish:
            del data["object"]  # some servers leave it out
        data["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return f"data: {json.dumps(data)}\n\n"

    opening = {"tool_calls": [{"index": 0, "id": "call_S", "function": {"name": "f", "arguments": ""}}]}
    piece = {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}
    chat = (chunk(opening) + chunk(piece) + chunk({}, "tool_calls") + "data: [DONE]\n\n").encode()
    item = {"type": "message", "id": "msg_Q", "content": []}
    response = {"id": "resp_Q", "object": "response", "created_at": 3, "output": []}
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.output_text.delta", "item_id": "msg_Q", "delta": "msg_Q"},
        {"type": "response.completed", "response": {**response, "output": [item]}},
    ]
    streamed = "".join(f"event: {e['type']}\r\ndata: {json.dumps(e)}\r\n\r\n" for e in events).encode()
    [(_, _, chat_out), (_, _, events_out)] = stable_ids(
        [(CHAT, _compact({"stream": True}), chat), ("/v1/responses", _compact({"stream": True}), streamed)],
        NODE,
    )
    lines = chat_out.decode().split("\n")
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert {c["id"] for c in chunks} == {f"chatcmpl-{TEST}-1"}  # one answer, one id
    assert {c["created"] for c in chunks} == {0}
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == f"call_{TEST}-2"
    assert chunks[1]["choices"][0]["delta"] == piece
    assert lines[-3:] == ["data: [DONE]", "", ""]
    text = events_out.decode()
    assert text.count("\r\n") == streamed.decode().count("\r\n")  # the events' own line ends
    out = [json.loads(line[6:]) for line in text.split("\r\n") if line.startswith("data: ")]
    assert [line for line in text.split("\r\n") if line.startswith("event:")] == [
        f"event: {e['type']}" for e in events
    ]
    assert out[0]["response"]["id"] == out[3]["response"]["id"] == f"resp_{TEST}-3"
    assert (
        out[1]["item"]["id"] == out[2]["item_id"] == out[3]["response"]["output"][0]["id"] == f"msg_{TEST}-4"
    )
    assert out[2]["delta"] == "msg_Q"
    assert out[0]["response"]["created_at"] == 0


def test_stable_ids_leave_uploads_and_other_endpoints_alone() -> None:
    upload = (
        b'--seedrepro-multipart-boundary\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        b'{"id": "chatcmpl-1", "object": "chat.completion"}\r\n--seedrepro-multipart-boundary--\r\n'
    )
    exchanges = [
        (CHAT, b"{}", _chat_answer("chatcmpl-1")),  # an id numbered before them changes nothing in them
        ("/v1/audio/transcriptions", upload, b'{"text": "chatcmpl-1", "id": "chatcmpl-1"}'),
        ("/v1/files", upload, b'{"id": "file-abc", "object": "file", "created_at": 1}'),
        ("/v1/embeddings", b'{"input":"chatcmpl-1"}', b'{"object": "list", "data": [], "id": "chatcmpl-1"}'),
        ("/v1/files/chatcmpl-1x/content", None, b"chatcmpl-1"),
        ("/v1/chat/completions", b'{"messages":[]}', b'{"error": {"message": "bad", "id": "x"}}'),
        ("/v1/chat/completions", b"not json", b"\xff\xfe not text"),
    ]
    numbered = stable_ids(exchanges, NODE)
    assert json.loads(numbered[0][2])["id"] == f"chatcmpl-{TEST}-1"
    assert all(
        a is b
        for exchange, new in zip(exchanges[1:], numbered[1:], strict=True)
        for a, b in zip(exchange, new, strict=True)
    )


def test_stable_ids_never_number_an_empty_id_and_give_each_answer_its_own() -> None:
    # A server that gives every answer the same id, a tool call an empty one, and an id without a prefix.
    exchanges = [
        (CHAT, b"{}", _chat_answer("chatcmpl-123", ("",))),
        (CHAT, b"{}", _chat_answer("chatcmpl-123", ("1",), text="1 is 1")),
    ]
    (_, _, first), (_, _, second) = stable_ids(exchanges, NODE)
    first_data, second_data = json.loads(first), json.loads(second)
    assert first_data["id"] == f"chatcmpl-{TEST}-1" and second_data["id"] == f"chatcmpl-{TEST}-2"
    assert first_data["choices"][0]["message"]["tool_calls"][0]["id"] == ""
    message = second_data["choices"][0]["message"]
    assert message["tool_calls"][0]["id"] == f"id-{TEST}-3" and message["content"] == "1 is 1"


def test_stable_ids_follow_an_id_sent_back_whatever_the_file_order() -> None:
    # Calls from threads are stored by content: the call that sent an id back may come first.
    [loop_asked, loop_answered] = _tool_loop("chatcmpl-A1", "call_Zq9", "chatcmpl-B2")
    [(_, answered, _), _] = stable_ids([loop_answered, loop_asked], NODE)
    messages = json.loads(answered)["messages"]
    assert messages[-1]["tool_call_id"] == f"call_{TEST}-3"


def test_stable_ids_follow_a_stored_response_retrieved_or_deleted_by_its_id() -> None:
    created = json.dumps({"id": "resp_R", "object": "response", "created_at": 1, "output": []}).encode()
    retrieved = created
    exchanges = [
        ("http://h:1/v1/responses", _compact({"input": "hi", "store": True}), created),
        ("http://h:1/v1/responses/resp_R?include=x", None, retrieved),
        ("http://h:1/v1/responses/resp_R/input_items", None, b'{"object": "list", "data": []}'),
        ("http://h:1/v1/files/resp_Rx", None, b'{"id": "resp_Rx", "object": "file"}'),
    ]
    [(_, _, first), (url, _, again), (items, _, listed), unrelated] = stable_ids(exchanges, NODE)
    number = json.loads(first)["id"]
    assert number == f"resp_{TEST}-1"
    assert url == f"http://h:1/v1/responses/{number}?include=x" and json.loads(again)["id"] == number
    assert items == f"http://h:1/v1/responses/{number}/input_items" and listed is exchanges[2][2]
    assert unrelated == exchanges[3]  # only a whole path segment is an id


@pytest.mark.parametrize(
    ("n", "min_pass", "required"),
    [
        (25, 0.28, 7),
        (5, 0.8, 4),
        (5, 1.0, 5),
        (5, 1, 5),
        (3, 0.5, 2),
        (10, 0.3, 3),
        (100, 0.07, 7),
        (1, 0.01, 1),
    ],
)
def test_draws_needed_is_ceil_of_min_pass_times_n_computed_exactly(
    n: int, min_pass: float, required: int
) -> None:
    # 0.28 * 25 is 7.000000000000001 in floats (ceil 8), 0.07 * 100 is 7.000000000000001 too.
    mark = pytest.mark.draws(n, min_pass=min_pass).mark
    got_n, share, text = markers.draws_of(mark)
    assert (got_n, markers.required_draws(got_n, share), text) == (n, required, str(min_pass))


def test_every_draw_seed_is_distinct_across_draws_and_a_seed_matrix() -> None:
    seeds = [draws.draw_seed(seed, 4, draw) for seed in (1, 2, 3, -1, 0) for draw in range(4)]
    assert len(set(seeds)) == len(seeds)
