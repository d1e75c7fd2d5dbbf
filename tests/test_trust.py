"""Trust outside the happy path: no failure loses a file, no broken answer is recorded or passes.

Every test here runs the real plugin in a real pytest run against the
project's test server, and checks the files on disk byte for byte.
"""

from __future__ import annotations

import json

import pytest

from llmserver import LLMServer
from written import files_of

TWO_TESTS = """
import os
import pytest

@pytest.fixture
def maybe_broken():
    if os.environ.get("BREAK") == "setup":
        raise RuntimeError("the database is down")
    yield
    if os.environ.get("BREAK") == "teardown":
        raise RuntimeError("cannot drop the database")

def test_a(maybe_broken, seeded_llm):
    seeded_llm.complete("first")
    if os.environ.get("BREAK") == "body":
        raise AssertionError("the app got it wrong")

def test_b(seeded_llm):
    seeded_llm.complete("second")
"""


@pytest.mark.parametrize("where", ["no-key", "corrupt-recording", "other-fixture-setup", "teardown", "body"])
def test_a_failure_anywhere_keeps_the_snapshot_and_the_recording_byte_for_byte(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    suite.makepyfile(test_it=TWO_TESTS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    before = files_of(suite.path)
    assert len(before) == 4
    llm_server.variant = "a new backend answers differently"
    args = ["--seedrepro-mode=rerecord", "--snapshot-update"]
    if where == "no-key":
        monkeypatch.delenv("OPENAI_API_KEY")
    elif where == "corrupt-recording":
        cassette = suite.path / "cassettes" / "test_it" / "test_a.yaml"
        cassette.write_text("interactions: [ {request: \n")
        before = files_of(suite.path)
        args = ["--snapshot-update"]  # replay, the default
    else:
        monkeypatch.setenv("BREAK", where.replace("other-fixture-", ""))
    result = suite.runpytest(*args)
    out = result.stdout.str()
    assert "deleted" not in out, out
    assert "INTERNALERROR" not in out
    after = files_of(suite.path)
    for name in before:
        if where == "no-key" or "test_a" in name:
            assert after[name] == before[name], name


@pytest.mark.parametrize("mode", ["record", "rerecord", "live"])
@pytest.mark.parametrize(
    ("kind", "stream", "cause"),
    [
        ("html-page", False, "the answer is not the API's JSON (content-type text/html*"),
        ("error-object", False, "the answer is an error object, not a completion: quota exceeded"),
        ("no-choices", False, "the answer has no 'choices': not a completion"),
        ("not-utf8", False, "the answer is not UTF-8 text*"),
        ("events-not-json", True, "a stream event is not JSON*"),
        ("stream-without-end", True, "the stream ended without its end*"),
        ("cut-stream", True, "*RemoteProtocolError: peer closed connection*"),
    ],
)
def test_a_broken_answer_fails_the_test_and_writes_nothing(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str, kind: str, stream: bool, cause: str
) -> None:
    suite.makepyfile(
        test_it=f"""
        def test_a(seeded_llm):
            try:
                seeded_llm.complete("hello", stream={stream})
            except Exception:
                pass  # an app with a broad fallback
        """
    )
    if mode != "record":  # record replays what it has: the broken answer must be new to it
        suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    before = files_of(suite.path)
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "half an answer"}, "finish_reason": None}],
    }
    if kind == "html-page":
        llm_server.serve_next_raw("<html><body>Sign in to the wifi</body></html>", content_type="text/html")
    elif kind == "error-object":
        llm_server.serve_next_raw('{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}')
    elif kind == "no-choices":
        llm_server.serve_next_raw('{"id": "x", "object": "chat.completion", "model": "m", "choices": []}')
    elif kind == "not-utf8":
        llm_server.serve_next_raw(b'{"choices": [{"message": {"content": "\xff\xfe"}}]}')
    elif kind == "events-not-json":
        llm_server.serve_next_raw(
            "data: this is not json\n\ndata: [DONE]\n\n", content_type="text/event-stream"
        )
    elif kind == "stream-without-end":
        llm_server.serve_next_raw(f"data: {json.dumps(chunk)}\n\n", content_type="text/event-stream")
    else:
        # Recording reads the whole body inside the SDK's call, whose retries
        # would heal one cut: cut them all.
        llm_server.cut_next_stream(after_chunks=2, count=5)
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"seedrepro: test_it.py::test_a: call 0: {cause}"])
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert files_of(suite.path) == before  # nothing written, nothing lost
    assert not list(suite.path.rglob("*.tmp"))


CLIENT_ERRORS = """
import openai
import pytest

def test_a(seeded_llm):
    with pytest.raises(openai.{error}) as raised:
        seeded_llm.complete("ask for a model that does not exist")
    assert raised.value.status_code == {status}
"""


@pytest.mark.parametrize(
    ("status", "error"), [(400, "BadRequestError"), (404, "NotFoundError"), (422, "UnprocessableEntityError")]
)
def test_an_expected_client_error_is_recorded_and_replayed(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch, status: int, error: str
) -> None:
    suite.makepyfile(test_it=CLIENT_ERRORS.format(error=error, status=status))
    llm_server.fail_next(status=status, message="The model `nope` does not exist")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = (suite.path / "cassettes" / "test_it" / "test_a.yaml").read_text()
    assert f"code: {status}" in cassette
    snapshot = next((suite.path / "__snapshots__").rglob("*.llm.yaml")).read_text()
    assert f"status: {status}" in snapshot and "does not exist" in snapshot
    llm_server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    suite.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("status", [401, 403, 429, 500])
def test_an_auth_or_transient_error_is_never_recorded_even_if_the_app_catches_it(
    suite: pytest.Pytester, llm_server: LLMServer, status: int
) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            try:
                seeded_llm.client.with_options(max_retries=0).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}])
            except Exception:
                pass
        """
    )
    llm_server.fail_next(status=status, message="Incorrect API key provided: sk-sent***ever")
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"seedrepro: test_it.py::test_a: call 0: *Error: Error code: {status}*"])
    assert files_of(suite.path) == {}


def test_closing_the_fixtures_client_breaks_no_later_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        def test_closes_it(seeded_llm):
            with seeded_llm.client as client:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])

        def test_after(seeded_llm):
            assert seeded_llm.complete("b")
            assert not seeded_llm.client.is_closed()
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    suite.runpytest().assert_outcomes(passed=2)


def test_an_output_with_a_lone_surrogate_is_recorded_replayed_and_snapshotted(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    answer = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "system_fingerprint": "fp_proxy",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "cut \ud83d here"},
                "finish_reason": "stop",
            }
        ],
    }
    llm_server.serve_next_raw(json.dumps(answer))  # ASCII JSON: the surrogate travels as \ud83d
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            assert seeded_llm.complete("emoji please") == "cut \\ud83d here"
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    snapshot = next((suite.path / "__snapshots__").rglob("*.llm.yaml")).read_text(encoding="utf-8")
    assert "cut \\ud83d here" in snapshot
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)


THREADS = """
import random, time
from concurrent.futures import ThreadPoolExecutor

def test_a(seeded_llm):
    def ask(i):
        time.sleep(random.random() / 50)  # a different interleaving on every run
        return seeded_llm.complete(f"question {i}")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    assert len(set(answers)) == 8
"""


def test_calls_from_threads_write_the_same_files_and_replay_every_time(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=THREADS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    first = files_of(suite.path)
    for _ in range(2):
        suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
        # Byte for byte: the ids the server made up are numbered per test, the same on every run.
        assert files_of(suite.path) == first
    llm_server.stop()
    for _ in range(5):
        suite.runpytest().assert_outcomes(passed=1)
    assert files_of(suite.path) == first


def test_credential_query_parameters_never_reach_a_file(
    suite: pytest.Pytester, llm_server: LLMServer, sentinel_key: str
) -> None:
    suite.makepyfile(
        test_it=f"""
        import openai

        def test_a(seeded_llm):
            client = openai.OpenAI(default_query={{
                "subscription-key": "{sentinel_key}", "apikey": "{sentinel_key}", "access_key": "{sentinel_key}",
                "X-Amz-Signature": "{sentinel_key}", "sig": "{sentinel_key}", "api-version": "2024-10-21",
            }})
            client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "q"}}])
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert sentinel_key in llm_server.requests[0].query  # it was sent, and dropped on the way to disk
    written = b"".join(files_of(suite.path).values()).decode()
    assert sentinel_key not in written
    assert "api-version=2024-10-21" in written  # a harmless parameter is kept
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)  # matched without the secrets


def test_temp_files_left_by_an_interrupted_write_are_removed_at_the_next_write(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    stale = [
        suite.path / "cassettes" / "test_it" / ".test_a.yaml.k1l2m3.tmp",
        suite.path / "__snapshots__" / "test_it" / ".test_a.llm.yaml.n4o5p6.tmp",
    ]
    for path in stale:
        path.parent.mkdir(parents=True)
        path.write_text("half a file")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert not [p for p in stale if p.exists()]
    assert len(files_of(suite.path)) == 2
