"""What a test writes: its recording and snapshot together, only when the run was accepted.

Real pytest runs of a suite against the project's test server, checking the
files on disk byte for byte (DESIGN, "What a test writes"). The rule itself is
unit-tested as a table in tests/test_decision.py.
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from llmserver import LLMServer
from written import files_of

# In-process pytester runs inherit this suite's `filterwarnings = error`; the
# inner runs here expect the warn policy's warning to stay a warning.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproFingerprintWarning")

RECORD = ("--seedrepro-mode=record", "--snapshot-update", "-p", "no:cacheprovider")
RERECORD = ("--seedrepro-mode=rerecord", "-p", "no:cacheprovider")
CASSETTE = "cassettes/test_it/test_a.yaml"
SNAPSHOT = "__snapshots__/test_it/test_a.llm.yaml"

ONE_CALL = """
def test_a(seeded_llm):
    seeded_llm.complete("tell me a story")
"""


def recorded_prompts(suite: pytest.Pytester) -> list[str]:
    """The user messages of every interaction in the test's cassette, in the file's order."""
    import json

    cassette = yaml.safe_load((suite.path / CASSETTE).read_text())
    return [
        json.loads(entry["request"]["body"])["messages"][-1]["content"] for entry in cassette["interactions"]
    ]


def test_a_regression_in_rerecord_keeps_both_files_and_replay_still_passes(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    assert sorted(before) == sorted([CASSETTE, SNAPSHOT])
    llm_server.variant = "regressed"  # the same fingerprint, another output
    result = suite.runpytest(*RERECORD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the output changed but the fingerprint did not*", "1 snapshot failed."])
    assert files_of(suite.path) == before
    llm_server.stop()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(("policy", "outcome"), [("skip", "skipped"), ("warn", "passed"), ("fail", "failed")])
def test_a_drift_in_rerecord_keeps_both_files_whatever_the_policy(
    suite: pytest.Pytester, llm_server: LLMServer, policy: str, outcome: str
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "a new backend"
    result = suite.runpytest(*RERECORD, f"--seedrepro-on-fingerprint-change={policy}")
    result.assert_outcomes(**{outcome: 1})
    assert files_of(suite.path) == before
    llm_server.stop()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("change", ["fingerprint", "response-model"])
def test_a_passing_rerecord_whose_snapshot_would_change_keeps_both_files(
    suite: pytest.Pytester, llm_server: LLMServer, change: str
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    if change == "fingerprint":
        llm_server.fingerprint = "fp_test_2"  # the same output from another backend
    else:
        llm_server.model_override = "gpt-4o-mini-2099-01-01"  # an alias now points elsewhere
    suite.runpytest(*RERECORD).assert_outcomes(passed=1)
    assert files_of(suite.path) == before


def test_a_pass_through_the_compare_hook_keeps_both_files(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(
        """
        def pytest_seedrepro_compare(expected, actual, call):
            return True  # any answer will do
        """
    )
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    llm_server.variant = "said otherwise"
    suite.runpytest(*RERECORD).assert_outcomes(passed=1)
    assert files_of(suite.path) == before


def test_a_passing_rerecord_with_an_identical_snapshot_writes_the_new_recording(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    cassette = suite.path / CASSETTE
    cassette.write_bytes(before[CASSETTE] + b"# a line only the previous recording has\n")
    suite.runpytest(*RERECORD).assert_outcomes(passed=1)
    assert files_of(suite.path) == before  # written again, as the API answered


def test_a_new_test_keeps_its_recording_and_replay_then_writes_the_snapshot_offline(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    result = suite.runpytest("--seedrepro-mode=record", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*seedrepro: test_it.py::test_a: no snapshot yet*--snapshot-update*"])
    assert sorted(files_of(suite.path)) == [CASSETTE]
    llm_server.stop()
    calls_before = len(llm_server.requests)
    suite.runpytest("--snapshot-update", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert sorted(files_of(suite.path)) == sorted([CASSETTE, SNAPSHOT])
    assert len(llm_server.requests) == calls_before
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_record_keeps_only_the_interactions_the_test_used(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    assert recorded_prompts(suite) == ["tell me a story"]
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.complete("tell me a poem")
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    assert recorded_prompts(suite) == ["tell me a poem"]


def test_record_keeps_replayed_and_new_interactions_in_the_tests_order(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.complete("one")
            seeded_llm.complete("two")
            seeded_llm.complete("three")
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.complete("zero")
            seeded_llm.complete("one")
            seeded_llm.complete("three")
            seeded_llm.complete("one")
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    assert recorded_prompts(suite) == ["zero", "one", "three", "one"]


@pytest.mark.parametrize("mode", ["replay", "record"])
def test_snapshot_update_removes_the_snapshot_of_a_test_that_no_longer_calls(
    suite: pytest.Pytester, mode: str
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    pass\n")
    result = suite.runpytest("-p", "no:cacheprovider", f"--seedrepro-mode={mode}")
    result.assert_outcomes(failed=1)  # the snapshot has a call the test no longer makes
    assert files_of(suite.path) == before
    result = suite.runpytest("--snapshot-update", "-p", "no:cacheprovider", f"--seedrepro-mode={mode}")
    result.assert_outcomes(passed=1)
    assert "calls: []" not in "".join(p.read_text() for p in suite.path.rglob("*.yaml"))
    # Written together: record drops the recording the test no longer uses; replay writes none.
    assert sorted(files_of(suite.path)) == ([CASSETTE] if mode == "replay" else [])
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


COUNT_RENDERS = """
import pytest_seedrepro.snapshots as snapshots

_real = snapshots.render
rendered = []


def _counting(nodeid, calls):
    rendered.append(nodeid)
    return _real(nodeid, calls)


def pytest_configure(config):
    snapshots.render = _counting


def pytest_unconfigure(config):
    snapshots.render = _real


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"snapshots rendered: {len(rendered)}")
"""


@pytest.mark.parametrize(
    ("mode", "renders"),
    [("replay", 0), ("record", 0), ("rerecord", 1)],  # record replayed it all: its recording did not change
)
def test_a_passing_run_renders_its_snapshot_only_to_decide_whether_to_write_its_recording(
    suite: pytest.Pytester, mode: str, renders: int
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    suite.makeconftest(COUNT_RENDERS)
    result = suite.runpytest(f"--seedrepro-mode={mode}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"snapshots rendered: {renders}"])


STOPS_EARLY = """
import os

def test_first(seeded_llm):
    seeded_llm.complete("one")
    assert not os.environ.get("FAIL_FIRST")

def test_second(seeded_llm):
    seeded_llm.complete("two")

def test_third(seeded_llm):
    seeded_llm.complete("three")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
@pytest.mark.parametrize("mode", ["replay", "rerecord"])
def test_a_run_that_stops_early_keeps_the_snapshots_of_the_tests_it_did_not_run(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, mode: str, workers: list[str]
) -> None:
    # syrupy counts a test that never ran as one whose snapshot is unused, and
    # --snapshot-update deletes unused snapshots: -x must not cost the rest.
    suite.makepyfile(test_a=STOPS_EARLY)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=3)
    before = files_of(suite.path)
    monkeypatch.setenv("FAIL_FIRST", "1")
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update", "-x", *workers)
    assert result.parseoutcomes()["failed"] == 1
    assert result.parseoutcomes().get("passed", 0) < 2  # stopped before the others all ran
    assert files_of(suite.path) == before


@pytest.mark.parametrize("change", ["regression", "drift"])
def test_a_live_run_of_a_recorded_test_hints_a_command_that_refreshes_both_files(
    suite: pytest.Pytester, llm_server: LLMServer, change: str
) -> None:
    # A live run reads no recording; refreshing the snapshot alone would part it from the
    # recording, and replay would then fail (or skip) on the old answer.
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    if change == "drift":
        llm_server.fingerprint = "fp_test_2"
    llm_server.variant = "a new answer"
    result = suite.runpytest("--seedrepro-mode=live", "-rs", "-p", "no:cacheprovider")
    line = next(line for line in result.outlines if "--snapshot-update 'test_it.py::test_a'" in line)
    command = shlex.split(line[line.index("pytest --seedrepro-mode=") :])
    assert command[1] == "--seedrepro-mode=rerecord"
    suite.runpytest(*command[1:], "-p", "no:cacheprovider").assert_outcomes(passed=1)
    llm_server.stop()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)  # replay agrees with the snapshot
