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
            "repeat: each call sent 3 times, together; identical = answers equal to the first",
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


#: One call of each kind, whose answer the test writes down; ``PROBE`` gives its sends seeds 100, 101, 102.
CALLS = {
    "sync": "seeded_llm.complete(PROMPT, temperature=0.9)",
    "async": "await seeded_llm.acomplete(PROMPT, temperature=0.9)",
    "stream": "seeded_llm.complete(PROMPT, temperature=0.9, stream=True)",
    "async stream": "await seeded_llm.acomplete(PROMPT, temperature=0.9, stream=True)",
}


def one_call_suite(suite: pytest.Pytester, kind: str) -> None:
    suite.makeconftest(PROBE)
    asynchronous = kind.startswith("async")
    suite.makepyfile(
        test_it=f"""
        import pathlib
        import pytest

        PROMPT = "is this reproducible?"

        {"@pytest.mark.asyncio" if asynchronous else ""}
        {"async " if asynchronous else ""}def test_it(seeded_llm):
            pathlib.Path("seen.txt").write_text({CALLS[kind]})
        """
    )


def check_the_test_saw_the_first_answer(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    sends = [r for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert sorted(r.body["seed"] for r in sends if r.body) == [100, 101, 102]
    first = next(r.body for r in sends if r.body and r.body["seed"] == 100)
    expected = llm_server.expected_text(
        seed=100, model=first["model"], temperature=first["temperature"], messages=first["messages"]
    )
    assert (suite.path / "seen.txt").read_text() == expected


@pytest.mark.parametrize("kind", list(CALLS))
def test_the_repeats_are_sent_together_with_their_call(
    suite: pytest.Pytester, llm_server: LLMServer, kind: str
) -> None:
    # The server holds the three sends until all three are in: sent one after another, the first
    # waits out the timeout alone and nothing overlaps.
    llm_server.meet_next(3, timeout=5)
    one_call_suite(suite, kind)
    result = suite.runpytest(*REPEAT, "--seedrepro-report=report.json")
    result.assert_outcomes(passed=1)
    sends = [r for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert len(sends) == 3
    assert all(a.overlaps(b) for a in sends for b in sends if a is not b)
    check_the_test_saw_the_first_answer(suite, llm_server)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: repeat: every call is sent 3 times, its repeats together with it*",
            "repeat: each call sent 3 times, together; identical = answers equal to the first",
            "test_it.py::test_it * 100 * 1/3 * 3 * * fp_test_1",
        ]
    )
    (row,) = json.loads((suite.path / "report.json").read_text())["repeat"]
    assert (row["call"], row["seed"], row["n"], row["identical"], row["distinct"]) == (0, 100, 3, 1, 3)


@pytest.mark.parametrize("kind", list(CALLS))
@pytest.mark.parametrize("how", ["flag", "ini"])
def test_serial_sends_the_repeats_one_at_a_time(
    suite: pytest.Pytester, llm_server: LLMServer, kind: str, how: str
) -> None:
    # Answers take a while (a stream's events come over that time): sends that were not one at a
    # time would be in the server together.
    llm_server.latency = 0.2
    one_call_suite(suite, kind)
    if how == "ini":
        suite.makeini(
            f"[pytest]\nseedrepro_base_url = {llm_server.base_url}\nseedrepro_repeat_serial = true\n"
            "asyncio_default_fixture_loop_scope = function\n"
        )
    result = suite.runpytest(*REPEAT, *(["--seedrepro-repeat-serial"] if how == "flag" else []))
    result.assert_outcomes(passed=1)
    sends = sorted(
        (r for r in llm_server.requests if r.path.endswith("/chat/completions")), key=lambda r: r.arrived
    )
    assert [r.body["seed"] for r in sends if r.body] == [100, 101, 102]
    assert not any(a.overlaps(b) for a in sends for b in sends if a is not b)
    check_the_test_saw_the_first_answer(suite, llm_server)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: repeat: every call is sent 3 times, one at a time (--seedrepro-repeat-serial)",
            "repeat: each call sent 3 times, one at a time; identical = answers equal to the first",
            "test_it.py::test_it * 100 * 1/3 * 3 * * fp_test_1",
        ]
    )


BAD_SECOND_SEND = """
import itertools

SENDS = itertools.count(1)

def pytest_seedrepro_request(body, item):
    if next(SENDS) == 2:
        body["messages"] = "not a list"  # the server answers this send 400
"""


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("kind", ["sync", "async stream"])
def test_a_failing_repeat_fails_the_test_with_its_number(
    suite: pytest.Pytester, llm_server: LLMServer, kind: str, serial: bool
) -> None:
    one_call_suite(suite, kind)
    suite.makeconftest(BAD_SECOND_SEND)
    result = suite.runpytest(*REPEAT, *(["--seedrepro-repeat-serial"] if serial else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["seedrepro: test_it.py::test_it: call 0: repeat 2 of 3 failed: BadRequestError: Error code: 400*"]
    )
    assert len([r for r in llm_server.requests if r.path.endswith("/chat/completions")]) == 3


def test_repeat_serial_needs_repeat(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("--seedrepro-mode=live", "--seedrepro-repeat-serial")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--seedrepro-repeat-serial says how --seedrepro-repeat sends its repeats: use it with "
            "--seedrepro-repeat=N and --seedrepro-mode=live"
        ]
    )


def test_a_bad_repeat_serial_ini_value_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nseedrepro_repeat_serial = maybe\n")
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest("--seedrepro-mode=live", "--seedrepro-repeat=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*ini option seedrepro_repeat_serial: invalid truth value 'maybe'; give true or false"]
    )


BAD_FIRST_SEND = BAD_SECOND_SEND.replace("== 2", "== 1")


@pytest.mark.parametrize("serial", [False, True])
def test_a_call_that_fails_has_no_repeat_figures(
    suite: pytest.Pytester, llm_server: LLMServer, serial: bool
) -> None:
    suite.makeconftest(BAD_FIRST_SEND)
    suite.makepyfile(
        test_it="""
        import openai
        import pytest

        def test_it(seeded_llm):
            with pytest.raises(openai.BadRequestError):  # the app handles the error
                seeded_llm.complete("is this reproducible?")
            seeded_llm.complete("and this?")
        """
    )
    report = "--seedrepro-report=report.json"
    result = suite.runpytest(*REPEAT, report, *(["--seedrepro-repeat-serial"] if serial else []))
    result.assert_outcomes(passed=1)
    rows = json.loads((suite.path / "report.json").read_text())["repeat"]
    assert [(r["call"], r["n"], r["identical"]) for r in rows] == [(1, 3, 3)]
    # Sent together, the failed call's repeats went out with it; one at a time, none did.
    sends = [r for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert len(sends) == (4 if serial else 6)


def test_a_cancelled_async_call_takes_its_repeats_with_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    llm_server.latency = 30  # answers the test never waits for (stopping the server ends them)
    suite.makepyfile(
        test_it="""
        import asyncio
        import pathlib
        import pytest

        @pytest.mark.asyncio
        async def test_it(seeded_llm):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(seeded_llm.acomplete("is this reproducible?"), 0.5)
            pathlib.Path("tasks.txt").write_text(str(len(asyncio.all_tasks())))
        """
    )
    result = suite.runpytest(*REPEAT, "-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["seedrepro: test_it.py::test_it: call 0: cancelled before its answer was whole*"]
    )
    assert len([r for r in llm_server.requests if r.path.endswith("/chat/completions")]) == 3
    assert (suite.path / "tasks.txt").read_text() == "1"  # the test's own: no repeat outlived its call
