"""What the fast replay path shares, caches and skips, and that none of it changes a result.

Speed itself is measured in ``benchmarks/`` (bench_compare.py), never asserted here.
"""

from __future__ import annotations

import gzip
import ssl
import threading
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from pytest_seedrepro import snapshots
from pytest_seedrepro.calls import Call
from pytest_seedrepro.options import Settings
from pytest_seedrepro.recording import Recording, open_cassette
from pytest_seedrepro.session import RunState
from written import files_of


def settings(mode: str) -> Settings:
    return Settings(
        mode=mode,
        on_fingerprint_change="skip",
        default_seed=1234,
        model="gpt-4o-mini",
        base_url=None,
        cassette_dir="cassettes",
    )


def test_replay_tls_context_verifies_and_trusts_no_one() -> None:
    # Replay never connects; should anything connect anyway, it must fail, not go unchecked.
    context = RunState(settings("replay")).ssl_context(openai.DefaultHttpxClient)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0


@pytest.mark.parametrize("mode", ["record", "rerecord", "live"])
def test_modes_that_connect_get_the_ca_store(mode: str) -> None:
    context = RunState(settings(mode)).ssl_context(openai.DefaultHttpxClient)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] > 0


def test_the_shared_client_is_built_once_even_from_threads_and_closed_at_the_end() -> None:
    run = RunState(settings("replay"))
    built: list[Any] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        built.append(run.shared_client("sk-a", "http://127.0.0.1:1/v1"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in built}) == 1
    other = run.shared_client("sk-b", "http://127.0.0.1:1/v1")
    assert other is not built[0]
    run.close_shared_clients()
    assert built[0].is_closed() and other.is_closed()
    assert run.shared_client("sk-a", "http://127.0.0.1:1/v1") is not built[0]  # a new one after closing
    run.close_shared_clients()


def test_the_shared_client_follows_the_organisation_and_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    run = RunState(settings("replay"))
    plain = run.shared_client("sk-a", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-x")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-y")
    scoped = run.shared_client("sk-a", "http://127.0.0.1:1/v1")
    assert scoped is not plain
    assert (scoped.organization, scoped.project) == ("org-x", "proj-y")
    assert (plain.organization, plain.project) == (None, None)
    run.close_shared_clients()


def test_complete_works_after_the_test_closed_its_client(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.client.close()
            assert seeded_llm.complete("still here")
            assert len(seeded_llm.calls) == 1
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    suite.runpytest().assert_outcomes(passed=1)


class _FakeAssertion:
    def __init__(self, extension_class: type) -> None:
        self.extension_class = extension_class


class _FakeSnapshotFixture:
    def use_extension(self, extension_class: type) -> _FakeAssertion:
        return _FakeAssertion(extension_class)


class _FakeRequest:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def getfixturevalue(self, name: str) -> _FakeSnapshotFixture:
        self.asked.append(name)
        return _FakeSnapshotFixture()


class _ConfigWithoutSyrupy:
    option = None


class _Item:
    config = _ConfigWithoutSyrupy()


def test_without_syrupys_session_the_snapshot_comes_from_its_fixture() -> None:
    request = _FakeRequest()
    assertion = snapshots.assertion_for(_Item(), request)
    assert request.asked == ["snapshot"]
    assert assertion.extension_class is snapshots.LLMCallsExtension
    with pytest.raises(LookupError):
        snapshots.assertion_for(_Item())


def test_the_snapshot_assertion_is_syrupys_own_with_seedrepros_extension(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from pytest_seedrepro import snapshots

        @pytest.fixture
        def built(request):
            return snapshots.assertion_for(request.node)
        """
    )
    pytester.makepyfile(
        """
        from syrupy.assertion import SnapshotAssertion
        from pytest_seedrepro import snapshots

        def test_a(built, request):
            assert isinstance(built, SnapshotAssertion)
            assert built.extension_class is snapshots.LLMCallsExtension
            assert built.session is request.config._syrupy
            assert built.update_snapshots is False
            assert built.test_location.nodeid == request.node.nodeid
        """
    )
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def _write_cassette(path: Path, interactions: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"interactions": interactions, "version": 1}))


def _interaction(
    body: str,
    *,
    status: int = 200,
    headers: dict[str, list[str]] | None = None,
    response: str | bytes = '{"ok": true}',
    request_headers: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    return {
        "request": {
            "body": body,
            "headers": request_headers or {"content-type": ["application/json"]},
            "method": "POST",
            "uri": "http://127.0.0.1:9/v1/chat/completions",
        },
        "response": {
            "body": {"string": response},
            "headers": headers or {"content-type": ["application/json"]},
            "status": {"code": status, "message": "OK"},
        },
    }


def test_loading_a_recording_applies_the_same_filters_as_recording(tmp_path: Path) -> None:
    # A hand-edited (or foreign) cassette: a secret header, a gzip body, a 500.
    path = tmp_path / "cassette.yaml"
    _write_cassette(
        path,
        [
            _interaction(
                '{"n": 1}',
                request_headers={"content-type": ["application/json"], "authorization": ["Bearer sk-secret"]},
            ),
            _interaction(
                '{"n": 2}',
                headers={"content-type": ["application/json"], "content-encoding": ["gzip"]},
                response=gzip.compress(b'{"zipped": true}', mtime=0),
            ),
            _interaction('{"n": 3}', status=500),
        ],
    )
    before = path.read_bytes()
    calls: list[Call] = []
    with open_cassette(Recording(path, calls, ignore_existing=False), "replay") as cassette:
        requests = [request for request, _ in cassette.data]
        responses = [response for _, response in cassette.data]
    assert [request.body for request in requests] == [b'{"n": 1}', b'{"n": 2}']  # the 500 is dropped
    assert all("authorization" not in {name.lower() for name in request.headers} for request in requests)
    assert responses[1]["body"]["string"] == b'{"zipped": true}'
    assert "content-encoding" not in {name.lower() for name in responses[1]["headers"]}
    assert path.read_bytes() == before  # replay writes nothing
    assert not cassette.dirty


def test_a_replayed_request_is_matched_on_its_body_and_played_once(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            first = seeded_llm.complete("same")
            second = seeded_llm.complete("same")
            other = seeded_llm.complete("other")
            assert first == second != other
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    written = files_of(suite.path)
    result = suite.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 test(s) with seeded_llm: 3 call(s) replayed, 0 live*"])
    assert files_of(suite.path) == written
    # The recording holds two answers for "same": a third send has nothing left to play.
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            for _ in range(3):
                seeded_llm.complete("same")
        """
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*call 2: *already replayed*"])
    assert files_of(suite.path) == written


def test_snapshot_directories_follow_snapshot_dirname_between_runs(suite: pytest.Pytester) -> None:
    # Both runs are in this process: a directory cached from the first must not leak into the second.
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    assert seeded_llm.complete('one')\n")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert (suite.path / "__snapshots__" / "test_it" / "test_a.llm.yaml").is_file()
    suite.runpytest("--snapshot-dirname=elsewhere", "--snapshot-update").assert_outcomes(passed=1)
    assert (suite.path / "elsewhere" / "test_it" / "test_a.llm.yaml").is_file()
