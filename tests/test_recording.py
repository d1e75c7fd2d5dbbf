"""Record and replay: offline, keyless, body-matched, secret-free, atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmserver import LLMServer

APP = """
import openai

def summarise(text):
    with openai.OpenAI() as client:  # built by the application itself
        reply = client.chat.completions.create(
            model="app-model", messages=[{"role": "user", "content": "Summarise: " + text}]
        )
    return reply.choices[0].message.content
"""

SUITE = """
import asyncio, json, pytest
import app

def dump(name, llm):
    with open(f"out-{name}.json", "w") as f:
        json.dump({"outputs": [c.output for c in llm.calls], "replayed": [c.replayed for c in llm.calls]}, f)

@pytest.mark.seed(11)
def test_sync(seeded_llm):
    seeded_llm.complete("hello")
    dump("sync", seeded_llm)

@pytest.mark.seed(12)
@pytest.mark.asyncio
async def test_gather(seeded_llm):
    await asyncio.gather(*(seeded_llm.acomplete(f"p{i}", temperature=0.7) for i in range(5)))
    dump("gather", seeded_llm)

@pytest.mark.seed(13)
def test_stream(seeded_llm):
    seeded_llm.complete("stream me", stream=True)
    dump("stream", seeded_llm)

@pytest.mark.seed(14)
def test_legacy(seeded_llm):
    seeded_llm.client.completions.create(model="m", prompt="once upon a time")
    "".join(c.choices[0].text for c in seeded_llm.client.completions.create(model="m", prompt="x", stream=True))
    dump("legacy", seeded_llm)

def test_app(seeded_llm):
    app.summarise("a long text")
    dump("app", seeded_llm)
"""

NAMES = ("sync", "gather", "stream", "legacy", "app")


def outputs(pytester: pytest.Pytester) -> dict[str, dict]:
    return {name: json.loads((pytester.path / f"out-{name}.json").read_text()) for name in NAMES}


def all_text(root: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and ".pyc" not in p.name
    )


def test_record_then_replay_offline_with_no_key(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(app=APP, test_suite=SUITE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=5)
    recorded = outputs(suite)
    assert all(all(r is False for r in out["replayed"]) for out in recorded.values())
    assert len(list((suite.path / "cassettes" / "test_suite").glob("*.yaml"))) == 5

    llm_server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    result = suite.runpytest()  # replay is the default mode
    result.assert_outcomes(passed=5)
    replayed = outputs(suite)
    for name in NAMES:
        assert replayed[name]["outputs"] == recorded[name]["outputs"], name
        assert all(replayed[name]["replayed"]), name
    assert None not in replayed["gather"]["outputs"] and len(set(replayed["gather"]["outputs"])) == 5


def test_replay_opens_no_connection(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(app=APP, test_suite=SUITE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=5)
    recorded_requests = len(llm_server.requests)
    assert recorded_requests >= 10
    port = llm_server.port
    llm_server.stop()
    llm_server.start(port=port)  # the same address, listening again
    llm_server.reset()
    suite.runpytest("--seedrepro-mode=replay").assert_outcomes(passed=5)
    assert llm_server.requests == []


def test_changed_seed_or_prompt_in_replay_fails_with_how_to_record(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.seed(1)\ndef test_a(seeded_llm):\n    seeded_llm.complete('hi')\n"
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.seed(2)\ndef test_a(seeded_llm):\n    seeded_llm.complete('hi')\n"
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: test_it.py::test_a: call 0: POST /chat/completions (seed=2, model=gpt-4o-mini) "
            "has no recording in *test_it*test_a.yaml: the closest recorded request differs in "
            "body key 'seed' (1 recorded, 2 now). "
            "Record it with: pytest --seedrepro-mode=record 'test_it.py::test_a'"
        ]
    )
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.seed(1)\ndef test_a(seeded_llm):\n    seeded_llm.complete('ho')\n"
    )
    suite.runpytest().assert_outcomes(failed=1)
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.seed(1)\ndef test_a(seeded_llm):\n    seeded_llm.complete('hi')\n"
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_missing_recording_fails_even_if_the_app_swallows_the_error(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        def test_a(seeded_llm):
            try:
                seeded_llm.complete("never recorded")
            except Exception:
                pass  # an app with a broad fallback
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: test_missing_recording_fails*: call 0: POST /chat/completions * has no recording: no file *Record it with:*"
        ]
    )
    assert not (suite.path / "cassettes").exists()


def test_rerecord_overwrites_and_live_writes_nothing(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('hi')\n")
    cassette = suite.path / "cassettes" / "test_it" / "test_a.yaml"
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)
    assert not (suite.path / "cassettes").exists()
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    first = cassette.read_text()
    llm_server.variant = "new backend"
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert cassette.read_text() == first  # record replays what is recorded
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
    second = cassette.read_text()
    assert second != first
    assert len(yaml.safe_load(second)["interactions"]) == 1


def test_identical_requests_replay_in_recorded_order(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import json
        def test_a(seeded_llm):
            answers = [seeded_llm.complete("same"), seeded_llm.complete("same")]
            with open("answers.json", "w") as f:
                json.dump(answers, f)
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = next((suite.path / "cassettes").rglob("*.yaml"))
    data = yaml.safe_load(cassette.read_text())
    assert len(data["interactions"]) == 2
    body = json.loads(data["interactions"][1]["response"]["body"]["string"])
    body["choices"][0]["message"]["content"] = "the second answer"
    data["interactions"][1]["response"]["body"]["string"] = json.dumps(body)
    cassette.write_text(yaml.safe_dump(data))
    suite.runpytest("--snapshot-update").assert_outcomes(passed=1)  # the answer changed on purpose
    first, second = json.loads((suite.path / "answers.json").read_text())
    assert second == "the second answer" and first != second


def test_recordings_are_readable_and_keep_no_secret_or_volatile_header(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(app=APP, test_suite=SUITE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=5)
    for cassette in (suite.path / "cassettes").rglob("*.yaml"):
        text = cassette.read_text()
        assert "!!binary" not in text and "gzip" not in text.lower(), cassette
        for interaction in yaml.safe_load(text)["interactions"]:
            request_headers = {h.lower() for h in interaction["request"]["headers"]}
            assert request_headers <= {"content-type", "accept"}, request_headers
            response_headers = {h.lower() for h in interaction["response"]["headers"]}
            assert response_headers <= {"content-type"}, response_headers
            assert json.loads(interaction["request"]["body"])["seed"] is not None
    # The server really sent gzip, organisation, project and cookies: they are dropped, not absent.
    assert any("gzip" in r.headers.get("accept-encoding", "") for r in llm_server.requests)


def test_sentinel_key_never_reaches_a_file(
    suite: pytest.Pytester, llm_server: LLMServer, sentinel_key: str
) -> None:
    suite.makepyfile(app=APP, test_suite=SUITE)
    extra: list[str] = []
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", *extra).assert_outcomes(passed=5)
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update", *extra).assert_outcomes(passed=5)
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update", *extra).assert_outcomes(passed=5)
    llm_server.fail_next(status=500, count=100)
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update", *extra).assert_outcomes(failed=5)
    assert any(sentinel_key in r.headers.get("authorization", "") for r in llm_server.requests)
    written = all_text(suite.path)
    assert written  # the probe reads the files that were written
    for secret in (sentinel_key, "org-server-sentinel", "proj_server_sentinel", "server-cookie-sentinel"):
        assert secret not in written
    for volatile in ("x-stainless", "user-agent", "User-Agent", "X-Stainless"):
        assert volatile not in written


@pytest.mark.parametrize("status", [500, 429])
def test_api_error_during_record_writes_nothing_and_errors_with_its_message(
    suite: pytest.Pytester, llm_server: LLMServer, status: int
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('hi')\n")
    llm_server.fail_next(status=status, count=10, message="the backend is on fire")
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the backend is on fire*"])
    assert not (suite.path / "cassettes").exists()
    assert not (suite.path / "__snapshots__").exists()


def test_api_error_during_rerecord_keeps_the_previous_recording(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('one')\n")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_it" / "test_a.yaml"
    before = cassette.read_bytes()
    llm_server.variant = "changed"
    # The first call succeeds with a new answer, the second cannot connect:
    # nothing of this run may be written.
    suite.makepyfile(
        test_it="""
        import openai

        def test_a(seeded_llm):
            seeded_llm.complete('one')
            unreachable = openai.OpenAI(base_url="http://127.0.0.1:9/v1", max_retries=0)
            unreachable.chat.completions.create(model="m", messages=[{"role": "user", "content": "two"}])
        """
    )
    result = suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Connection*refused*"])
    assert cassette.read_bytes() == before
    assert len(llm_server.requests) == 2


def test_swallowed_api_error_still_fails_the_test(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        """
        def test_a(seeded_llm):
            try:
                seeded_llm.client.with_options(max_retries=0).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}])
            except Exception:
                pass
        """
    )
    llm_server.fail_next(status=500, message="kaput")
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["seedrepro: *test_a: call 0: InternalServerError: *kaput*"])


@pytest.mark.parametrize("mode", ["record", "rerecord", "live"])
def test_a_mode_that_calls_the_api_needs_a_key(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    suite.makepyfile("def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"seedrepro: *test_a: --seedrepro-mode={mode} calls the API and needs OPENAI_API_KEY*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_corrupt_recording_is_one_error_naming_the_file(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    cassette = suite.path / "cassettes" / "test_it" / "test_a.yaml"
    cassette.parent.mkdir(parents=True)
    cassette.write_text("interactions: [ {request: \n  - broken: yaml: : :\n")
    result = suite.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["seedrepro: test_it.py::test_a: cannot read the recording *test_a.yaml: *"])
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert cassette.read_text().startswith("interactions: [ {request:")


def written_files(root: Path) -> dict[Path, bytes]:
    return {
        p.relative_to(root): p.read_bytes()
        for directory in ("cassettes", "__snapshots__")
        for p in (root / directory).rglob("*")
        if p.is_file()
    }


def test_serial_and_xdist_recordings_and_snapshots_are_identical(suite: pytest.Pytester) -> None:
    suite.makepyfile(app=APP, test_suite=SUITE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=5)
    serial = written_files(suite.path)
    import shutil

    shutil.rmtree(suite.path / "cassettes")
    shutil.rmtree(suite.path / "__snapshots__")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-n", "2").assert_outcomes(passed=5)
    parallel = written_files(suite.path)
    assert len(serial) == 10  # 5 recordings, 5 snapshots
    # Byte for byte: the ids the server made up are numbered per test, the same in both runs.
    assert parallel == serial


def test_a_file_where_the_recordings_directory_should_be_is_one_line_before_any_call(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    (suite.path / "cassettes").write_text("a file where the directory should be")
    result = suite.runpytest("--seedrepro-mode=record")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: test_it.py::test_a: cannot read the recording *cassettes*test_a.yaml: a file stands where a directory*"
        ]
    )
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    assert llm_server.requests == []  # found out before spending anything
    assert (suite.path / "cassettes").read_text() == "a file where the directory should be"


def test_a_recording_that_cannot_be_written_is_one_line_and_the_old_one_stays(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_it" / "test_a.yaml"
    snapshot = next((suite.path / "__snapshots__").rglob("*.llm.yaml"))
    before = cassette.read_bytes(), snapshot.read_bytes()
    llm_server.variant = "another answer"
    # A full disk, in the inner run only: the rename of the new recording fails.
    suite.makeconftest(
        """
        import errno, os
        import pytest_seedrepro.files as files

        class FullDisk:
            def __getattr__(self, name):
                return getattr(os, name)

            def replace(self, src, dst):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def pytest_configure(config):
            files.os = FullDisk()

        def pytest_unconfigure(config):
            files.os = os
        """
    )
    result = suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update")
    result.assert_outcomes(passed=1, errors=1)  # the body passed; writing its recording failed
    result.stdout.fnmatch_lines(
        ["seedrepro: test_it.py::test_a: cannot write the recording *test_a.yaml: No space left on device"]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out
    assert (cassette.read_bytes(), snapshot.read_bytes()) == before
    assert not [p for p in suite.path.rglob("*.tmp")]


def test_client_built_at_import_time_is_pinned_recorded_and_replayed(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)  # read at import, before any test
    suite.makepyfile(
        eager_app="""
        import openai

        CLIENT = openai.OpenAI()  # built when the module is imported

        def answer(question):
            reply = CLIENT.chat.completions.create(model="m", messages=[{"role": "user", "content": question}])
            return reply.choices[0].message.content
        """,
        test_eager="""
        import pytest
        import eager_app

        @pytest.mark.seed(5)
        def test_a(seeded_llm):
            assert eager_app.answer("why")
            assert seeded_llm.calls[0].request["seed"] == 5
        """,
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert [r.body["seed"] for r in llm_server.requests] == [5]
    llm_server.stop()
    monkeypatch.setenv("OPENAI_API_KEY", "any-value-replay-never-sends-it")
    suite.runpytest().assert_outcomes(passed=1)


ASYNC_STREAM = """
import pytest

@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 2])
async def test_streams(seeded_llm, n):
    stream = await seeded_llm.async_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], n=n, stream=True
    )
    texts = [""] * n
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert seeded_llm.calls[0].output == texts[0]
    outputs = seeded_llm.calls[0].outputs
    assert (list(outputs) if len(texts) > 1 else outputs) == (texts if len(texts) > 1 else ())
"""


def test_an_async_stream_is_stored_once_though_the_sdk_reads_its_bytes_again(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    # openai 3.x drains a finished async stream (iterates its byte stream once
    # more); a recorded stream yields its bytes again, which must not be
    # appended to the answer: record, replay and live see the same text.
    suite.makepyfile(test_it=ASYNC_STREAM)
    for args in (["--seedrepro-mode=record", "--snapshot-update"], [], ["--seedrepro-mode=live"]):
        suite.runpytest(*args).assert_outcomes(passed=2)
