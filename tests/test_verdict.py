"""The verdict table, policies, --snapshot-update, the summary: through the real SDK and the test server."""

from __future__ import annotations

import pytest
import yaml

from llmserver import LLMServer

LIVE = "--seedrepro-mode=live"

# In-process pytester runs inherit this suite's `filterwarnings = error`; the
# inner runs here expect the warn policy's warning to stay a warning.
pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproFingerprintWarning")

KINDS = {
    "sync": """
        def test_it(seeded_llm):
            seeded_llm.complete("tell me a story")
    """,
    "stream": """
        def test_it(seeded_llm):
            seeded_llm.complete("tell me a story", stream=True)
    """,
    "async": """
        import asyncio, pytest

        @pytest.mark.asyncio
        async def test_it(seeded_llm):
            await asyncio.gather(seeded_llm.acomplete("tell me a story"), seeded_llm.acomplete("and another"))
    """,
}

SNAPSHOT = "__snapshots__/test_it/test_it.llm.yaml"


def stored(pytester: pytest.Pytester, test: str = "test_it") -> list[dict]:
    return yaml.safe_load((pytester.path / f"__snapshots__/test_it/{test}.llm.yaml").read_text())["calls"]


# The table's logic is unit-tested on plain data (tests/test_units.py); under
# xdist, what is about xdist (the summary's transport, identical files, the
# report file) has its own tests below and in test_recording.py.
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_cell_of_the_verdict_table(suite: pytest.Pytester, llm_server: LLMServer, kind: str) -> None:
    suite.makepyfile(test_it=KINDS[kind])
    extra: tuple[str, ...] = ()

    def run(*args: str) -> pytest.RunResult:
        return suite.runpytest(LIVE, "-rsw", *extra, *args)

    # No snapshot yet: fail, saying how to write it (syrupy's rule).
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*seedrepro: test_it.py::test_it: no snapshot yet*run with --snapshot-update*"]
    )
    assert not (suite.path / SNAPSHOT).exists()

    run("--snapshot-update").assert_outcomes(passed=1)
    snapshot_before = (suite.path / SNAPSHOT).read_bytes()
    assert {c["system_fingerprint"] for c in stored(suite)} == {"fp_test_1"}

    # Same fingerprint, same output: pass.
    run().assert_outcomes(passed=1)

    # Same fingerprint, different output: a regression, with a diff and both fingerprints.
    llm_server.variant = "regressed"
    result = run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*call 0 (seed 1234, model gpt-4o-mini): the output changed but the fingerprint did not "
            "(snapshot: fp_test_1, this run: fp_test_1):",
            "*--- snapshot",
            "*+++ this run",
            "*If the new output is right: pytest --seedrepro-mode=live --snapshot-update 'test_it.py::test_it'",
        ]
    )

    # No fingerprint this time (llama-cpp-python): cannot blame the backend, still a regression.
    llm_server.fingerprint_style = "absent"
    run().assert_outcomes(failed=1)
    llm_server.fingerprint_style = "every"

    # Changed fingerprint, same output: pass, and the change is reported.
    llm_server.variant = ""
    llm_server.fingerprint = "fp_test_2"
    result = run()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*same output: test_it.py::test_it: fp_test_1 -> fp_test_2"])

    # Changed fingerprint, different output: the policy. skip by default...
    llm_server.variant = "new backend"
    result = run()
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_it.py:*: seedrepro: test_it.py::test_it: the backend changed and the output "
            "with it (call 0 (seed 1234): system_fingerprint fp_test_1 -> fp_test_2*). "
            "Refresh with: pytest --seedrepro-mode=live --snapshot-update 'test_it.py::test_it'",
        ]
    )
    result.stdout.fnmatch_lines(["  skipped: test_it.py::test_it: fp_test_1 -> fp_test_2"])
    assert (suite.path / SNAPSHOT).read_bytes() == snapshot_before

    # ... warn: pass with a SeedReproFingerprintWarning ...
    result = run("--seedrepro-on-fingerprint-change=warn")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*SeedReproFingerprintWarning: seedrepro: test_it.py::test_it: the backend changed*"]
    )
    assert (suite.path / SNAPSHOT).read_bytes() == snapshot_before

    # ... fail.
    result = run("--seedrepro-on-fingerprint-change=fail")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fp_test_1 -> fp_test_2*Refresh with:*"])
    assert (suite.path / SNAPSHOT).read_bytes() == snapshot_before

    # --snapshot-update takes the new backend's output and fingerprint; then it passes.
    run("--snapshot-update").assert_outcomes(passed=1)
    assert {c["system_fingerprint"] for c in stored(suite)} == {"fp_test_2"}
    run().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "args", "ini", "expected"),
    [
        ("", (), "", "skipped"),
        ("", (), "seedrepro_on_fingerprint_change = fail", "failed"),
        ("", ("--seedrepro-on-fingerprint-change=warn",), "seedrepro_on_fingerprint_change = fail", "passed"),
        (
            "@pytest.mark.on_fingerprint_change('fail')",
            ("--seedrepro-on-fingerprint-change=warn",),
            "",
            "failed",
        ),
        (
            "@pytest.mark.on_fingerprint_change('skip')",
            (),
            "seedrepro_on_fingerprint_change = fail",
            "skipped",
        ),
    ],
)
def test_policy_precedence_marker_flag_ini_default(
    suite: pytest.Pytester, llm_server: LLMServer, marker: str, args: tuple[str, ...], ini: str, expected: str
) -> None:
    suite.makeini(f"[pytest]\nseedrepro_base_url = {llm_server.base_url}\n{ini}\n")
    suite.makepyfile(
        test_it=f"import pytest\n\n{marker}\ndef test_it(seeded_llm):\n    seeded_llm.complete('x')\n"
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    result = suite.runpytest(LIVE, *args)
    result.assert_outcomes(**{expected: 1})


def test_skip_keeps_the_recording_and_snapshot_byte_identical(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="def test_it(seeded_llm):\n    seeded_llm.complete('a')\n    seeded_llm.complete('b')\n"
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_it" / "test_it.yaml"
    before = (cassette.read_bytes(), (suite.path / SNAPSHOT).read_bytes())
    llm_server.fingerprint, llm_server.variant = "fp_next", "changed"
    requests_before = len(llm_server.requests)
    result = suite.runpytest("--seedrepro-mode=rerecord")
    result.assert_outcomes(skipped=1)
    # The skip came after the body: both calls were made.
    assert len(llm_server.requests) - requests_before == 2
    assert (cassette.read_bytes(), (suite.path / SNAPSHOT).read_bytes()) == before
    # Accepting the new backend rewrites both.
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
    assert cassette.read_bytes() != before[0]
    assert {c["system_fingerprint"] for c in stored(suite)} == {"fp_next"}
    suite.runpytest().assert_outcomes(passed=1)  # replay agrees with the new snapshot


def test_warn_under_w_error_fails_only_because_of_the_warning(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    warn = "--seedrepro-on-fingerprint-change=warn"
    result = suite.runpytest(LIVE, warn, "-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*SeedReproFingerprintWarning: seedrepro: test_it.py::test_it: the backend changed*"]
    )
    assert "INTERNALERROR" not in result.stdout.str()
    result = suite.runpytest(
        LIVE, warn, "-W", "error", "-W", "ignore::pytest_seedrepro.SeedReproFingerprintWarning"
    )
    result.assert_outcomes(passed=1)
    assert "SeedReproFingerprintWarning" not in result.stdout.str()


def test_changed_pinned_parameters_fail_naming_each_key(suite: pytest.Pytester) -> None:
    module = "import pytest\n\n@pytest.mark.llm_params(temperature={t}, max_tokens={m})\ndef test_it(seeded_llm):\n    seeded_llm.complete('x')\n"
    suite.makepyfile(test_it=module.format(t=0.7, m=8))
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    suite.makepyfile(test_it=module.format(t=0, m=9))
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*call 0 (seed 1234, model gpt-4o-mini): request parameters changed since the snapshot: "
            "max_tokens: 8 -> 9; temperature: 0.7 -> 0"
        ]
    )


def test_a_changed_model_is_named(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.model_override = "gpt-4o-mini-2026-11-01"
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    result = suite.runpytest(LIVE, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "  skipped: test_it.py::test_it: fp_test_1 -> fp_new; model gpt-4o-mini -> gpt-4o-mini-2026-11-01",
            "*fp_test_1 -> fp_new; the response's model changed too: gpt-4o-mini -> gpt-4o-mini-2026-11-01*",
        ]
    )


@pytest.mark.parametrize(
    ("style", "expected"),
    [("last", "fp_test_1"), ("first_null", "fp_test_1"), ("constant", "fp_ollama"), ("absent", None)],
)
def test_a_streams_fingerprint_is_its_first_non_null_one(
    suite: pytest.Pytester, llm_server: LLMServer, style: str, expected: str | None
) -> None:
    llm_server.fingerprint_style = style
    suite.makepyfile(test_it=KINDS["stream"])
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    assert [c["system_fingerprint"] for c in stored(suite)] == [expected]


def test_disagreeing_stream_chunks_are_reported(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    llm_server.fingerprint_style = "disagree"
    suite.makepyfile(test_it=KINDS["stream"])
    result = suite.runpytest(LIVE, "--snapshot-update")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["stream chunks disagreed on the fingerprint in test_it.py::test_it: fp_test_1 / fp_test_1_b"]
    )
    assert [c["system_fingerprint"] for c in stored(suite)] == ["fp_test_1"]


def test_summary_is_printed_once_for_the_whole_run_under_xdist(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_it(seeded_llm, n):
            seeded_llm.complete(f"prompt {n}")
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-n", "2").assert_outcomes(passed=6)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    result = suite.runpytest("--seedrepro-mode=rerecord", "-n", "2")
    result.assert_outcomes(skipped=6)
    out = result.stdout.str()
    assert out.count("- seedrepro -") == 1
    result.stdout.fnmatch_lines(
        [
            "*- seedrepro -*",
            "6 test(s) with seeded_llm: 0 call(s) replayed, 6 live; * token(s) used live (0 replayed)",
            "fingerprints seen (tests): fp_new (6)",
            "fingerprint changes:",
        ]
    )
    assert out.count("  skipped: test_many.py::test_it[") == 6
    result = suite.runpytest("-n", "2")  # replay: the recordings were kept as they were
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        ["6 test(s) with seeded_llm: 6 call(s) replayed, 0 live*", "fingerprints seen (tests): fp_test_1 (6)"]
    )


def test_corrupt_snapshot_is_one_error_naming_the_file(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it=KINDS["sync"])
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    path = suite.path / SNAPSHOT
    for garbage in ("calls: [unclosed\n", "just a string\n", "calls:\n- no output here\n"):
        path.write_text(garbage)
        result = suite.runpytest(LIVE)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["seedrepro: test_it.py::test_it: cannot read the snapshot *test_it.llm.yaml: *"]
        )
        out = result.stdout.str()
        assert "INTERNALERROR" not in out and "Traceback" not in out
        assert path.read_text() == garbage
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    assert stored(suite)[0]["system_fingerprint"] == "fp_test_1"


def test_a_failing_test_keeps_its_snapshot_even_under_snapshot_update(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it=KINDS["sync"])
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = (suite.path / SNAPSHOT).read_bytes()
    suite.makepyfile(
        test_it="def test_it(seeded_llm):\n    seeded_llm.complete('tell me a story')\n    assert False, 'app bug'\n"
    )
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    assert "unused" not in result.stdout.str()
    result = suite.runpytest(LIVE, "--snapshot-update")
    result.assert_outcomes(failed=1)
    assert (suite.path / SNAPSHOT).read_bytes() == before


def test_snapshot_is_readable_and_has_no_volatile_fields(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.llm_params(max_tokens=12)\ndef test_it(seeded_llm):\n    seeded_llm.complete('x', stream=True)\n"
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    text = (suite.path / SNAPSHOT).read_text()
    (call,) = stored(suite)
    expected = llm_server.expected_text(
        seed=1234,
        model="gpt-4o-mini",
        temperature=None,
        messages=[{"role": "user", "content": "x"}],
        max_tokens=12,
    )
    assert call["output"] == expected and "\n" in expected
    for line in expected.splitlines():
        assert f"    {line}\n" in text  # each output line is a line of the file
    assert "chatcmpl" not in text and "created" not in text and "stream" not in call["request"]
    assert call["request"]["seed"] == 1234


def test_a_test_without_calls_writes_no_snapshot(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    assert seeded_llm.calls == []\n")
    suite.runpytest(LIVE).assert_outcomes(passed=1)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    assert not (suite.path / "__snapshots__").exists()


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_report_file_holds_the_summary(suite: pytest.Pytester, llm_server: LLMServer, xdist: bool) -> None:
    import json

    suite.makepyfile(test_it=KINDS["async"])
    extra = ("-n", "2") if xdist else ()
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", *extra).assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    suite.runpytest(
        "--seedrepro-mode=rerecord", "--seedrepro-report=out/report.json", *extra
    ).assert_outcomes(skipped=1)
    report = json.loads((suite.path / "out" / "report.json").read_text())
    assert report["tests"] == 1
    assert report["calls"] == {"replayed": 0, "live": 2, "unpinned": 0, "responses_api_without_seed": 0}
    assert report["fingerprints"] == {"fp_new": 1}
    assert report["fingerprint_changes"] == [
        {
            "test": "test_it.py::test_it",
            "outcome": "skipped",
            "old": "fp_test_1",
            "new": "fp_new",
            "old_model": "gpt-4o-mini",
            "new_model": "gpt-4o-mini",
        }
    ]


def test_only_drifted_refreshes_just_the_tests_that_drifted_last_time(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.complete("a")

        def test_b(seeded_llm):
            seeded_llm.complete("b")

        def test_plain():
            pass
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=3)
    result = suite.runpytest(LIVE, "--seedrepro-only-drifted", "--snapshot-update")
    result.assert_outcomes(deselected=3)
    result.stdout.fnmatch_lines(["seedrepro: no test drifted in the last run: nothing to refresh"])

    llm_server.fingerprint, llm_server.variant = "fp_test_2", "new backend"
    result = suite.runpytest(LIVE)
    result.assert_outcomes(skipped=2, passed=1)
    result.stdout.fnmatch_lines(
        [
            "refresh all 2 drifted tests with: pytest --seedrepro-mode=live --snapshot-update --seedrepro-only-drifted"
        ]
    )
    result = suite.runpytest(LIVE, "--snapshot-update", "--seedrepro-only-drifted", "-v")
    result.assert_outcomes(passed=2, deselected=1)
    result.stdout.fnmatch_lines(["seedrepro: refreshing 2 test(s) that drifted in the last run"])
    assert {c["system_fingerprint"] for c in stored(suite, "test_a")} == {"fp_test_2"}
    suite.runpytest(LIVE).assert_outcomes(passed=3)  # refreshed: nothing drifts any more


def test_only_drifted_needs_a_refreshing_mode_and_snapshot_update(suite: pytest.Pytester) -> None:
    suite.makepyfile("def test_a():\n    pass\n")
    result = suite.runpytest("--seedrepro-only-drifted")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--seedrepro-only-drifted refreshes the tests that drifted: use it with --seedrepro-mode=rerecord (or live) and --snapshot-update"
        ]
    )
