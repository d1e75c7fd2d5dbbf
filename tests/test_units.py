"""Unit tier: the pure pieces, without pytester or a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_seedrepro import snapshots
from pytest_seedrepro.calls import is_pinnable
from pytest_seedrepro.pinning import pin_body
from pytest_seedrepro.recording import _scrub_response, _stable_body, cassette_path


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
    assert path.name == "TestX.test_y[a_b_c_].yaml"


def test_error_responses_are_never_recorded() -> None:
    for status in (408, 409, 429, 500, 503):
        assert _scrub_response({"status": {"code": status}, "headers": {}, "body": {"string": b"{}"}}) is None


def test_recorded_response_keeps_only_content_type_and_fixes_ids() -> None:
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
    assert json.loads(scrubbed["body"]["string"]) == {
        "id": "chatcmpl-recorded",
        "object": "chat.completion",
        "created": 0,
        "x": 1,
    }


def test_stable_body_drops_llama_server_timings() -> None:
    body = json.dumps({"id": "x", "object": "text_completion", "created": 3, "timings": {"prompt_ms": 91.7}})
    assert "timings" not in json.loads(_stable_body(body.encode()))


def test_stable_body_leaves_responses_api_ids_alone() -> None:
    body = json.dumps({"id": "resp_1", "object": "response", "created_at": 5}).encode()
    assert _stable_body(body) == body


def test_stable_body_in_a_stream() -> None:
    chunk = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 7, "choices": []}
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    lines = _stable_body(stream).decode().split("\n")
    assert json.loads(lines[0][6:])["id"] == "chatcmpl-recorded" and lines[2] == "data: [DONE]"


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
