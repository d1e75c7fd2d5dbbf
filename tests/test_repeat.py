"""--seedrepro-repeat: the seed experiment as a command, through the real SDK and the test server."""

from __future__ import annotations

import json

import pytest

from llmserver import LLMServer

REPEAT = ("--seedrepro-mode=live", "--seedrepro-repeat=3", "-p", "no:cacheprovider")

SUITE = """
import pytest

@pytest.mark.seed(5)
def test_plain(seeded_llm):
    seeded_llm.complete("is this reproducible?")

@pytest.mark.seed(6)
def test_stream(seeded_llm):
    seeded_llm.complete("and streamed?", stream=True)
"""


def test_every_call_is_sent_n_times_and_the_figures_are_reported(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=SUITE)
    result = suite.runpytest(*REPEAT, "--seedrepro-report=report.json")
    result.assert_outcomes(passed=2)
    bodies = [r.body for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert sorted(b["seed"] for b in bodies) == [5, 5, 5, 6, 6, 6]
    assert sum(1 for b in bodies if b.get("stream")) == 3
    result.stdout.fnmatch_lines(
        [
            "repeat: each call sent 3 times; identical = answers equal to the first",
            "test * seed * identical * distinct * similarity * fingerprints",
            "test_it.py::test_plain * 5 * 3/3 * 1 * 1.00 * fp_test_1",
            "test_it.py::test_stream * 6 * 3/3 * 1 * 1.00 * fp_test_1",
        ]
    )
    report = json.loads((suite.path / "report.json").read_text())
    assert [(r["test"], r["n"], r["identical"], r["distinct"]) for r in report["repeat"]] == [
        ("test_it.py::test_plain", 3, 3, 1),
        ("test_it.py::test_stream", 3, 3, 1),
    ]
    assert not (suite.path / "cassettes").exists() and not (suite.path / "__snapshots__").exists()


PROBE = """
import itertools
import pytest

SEEDS = itertools.count(100)

def pytest_seedrepro_request(body, item):
    body["seed"] = next(SEEDS)  # a different seed on every send: the probe must see it
"""


@pytest.mark.parametrize("gate", [None, 0.8, 0.3])
def test_the_probe_sees_different_answers_and_min_identical_gates(
    suite: pytest.Pytester, llm_server: LLMServer, gate: float | None
) -> None:
    suite.makeconftest(PROBE)
    marker = f"@pytest.mark.min_identical({gate})" if gate is not None else ""
    suite.makepyfile(
        test_it=f"""
        import pytest

        {marker}
        def test_it(seeded_llm):
            seeded_llm.complete("is this reproducible?", temperature=0.9)
        """
    )
    result = suite.runpytest(*REPEAT)
    result.stdout.fnmatch_lines(["test_it.py::test_it * 1/3 * 3 * *"])
    if gate == 0.8:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "seedrepro: test_it.py::test_it: below min_identical(0.8): call 0 (seed 100): identical 1/3 (0.33), 3 distinct, mean similarity *"
            ]
        )
    else:
        result.assert_outcomes(passed=1)


def test_min_identical_is_ignored_outside_repeat_mode(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.min_identical(1.0)
        def test_it(seeded_llm):
            seeded_llm.complete("x")
        """
    )
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)


def test_a_similarity_hook_replaces_difflib(suite: pytest.Pytester) -> None:
    suite.makeconftest(PROBE + "\ndef pytest_seedrepro_similarity(a, b, call):\n    return 0.5\n")
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = suite.runpytest(*REPEAT)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_it.py::test_it * 0.50 *"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seedrepro-repeat=1"], "*--seedrepro-repeat: '1' is not a whole number of sends >= 2"),
        (["--seedrepro-repeat=many"], "*--seedrepro-repeat: 'many' is not a whole number of sends >= 2"),
        (
            ["--seedrepro-repeat=3"],
            "*--seedrepro-repeat sends every call 3 times to the API: use it with --seedrepro-mode=live (this run's mode is replay)",
        ),
    ],
)
def test_bad_repeat_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_min_identical_is_an_error_of_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.min_identical(2)\ndef test_a(seeded_llm):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: *::test_a: @pytest.mark.min_identical takes one share from 0 to 1 (e.g. 0.8), got 2 (int)"
        ]
    )
