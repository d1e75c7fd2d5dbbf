"""``@pytest.mark.draws(n, min_pass)``: one test whose body runs n times, through the real SDK and server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import openai
import pytest
import yaml

from llmserver import LLMServer

#: openai < 1.66 (the floor is 1.55.3) has no Responses API in the SDK.
needs_responses_api = pytest.mark.skipif(
    not hasattr(openai.OpenAI, "responses"), reason="this openai SDK (< 1.66) has no Responses API"
)

PROMPT = "name a colour"

RESPONSES = """
import json
import pytest

@pytest.mark.draws(5, min_pass={min_pass})
def test_sample(seeded_llm):
    answer = seeded_llm.client.responses.create(model="gpt-4o-mini", input="{prompt}")
    with open(f"draw-{{seeded_llm.draw}}.json", "w") as f:
        json.dump(answer.output_text, f)
    assert seeded_llm.draw != 2, "draw 2 is the bad sample"
"""

CHAT = """
import pytest

@pytest.mark.draws(5, min_pass={min_pass})
def test_chat(seeded_llm):
    seeded_llm.complete("{prompt}")
    assert seeded_llm.draw != 3, "draw 3 fails"
"""


def _outputs(suite: pytest.Pytester) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(suite.path.glob("draw-*.json"))}


@needs_responses_api
def test_responses_draws_are_recorded_once_and_replayed_offline_with_the_same_figures(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm_server.sample_unseeded = True  # identical unseeded requests: each its own answer
    suite.makepyfile(test_it=RESPONSES.format(min_pass=0.8, prompt=PROMPT))
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_it.py::test_sample PASSED (4/5 draws)*"])
    recorded = _outputs(suite)
    expected = [
        json.dumps(
            llm_server.expected_text(
                seed=None, model="gpt-4o-mini", temperature=None, prompt=PROMPT, sample=k
            )
        )
        for k in range(5)
    ]
    assert [recorded[f"draw-{k}.json"] for k in range(5)] == expected
    assert len(set(expected)) == 5
    assert sum(r.path.endswith("/responses") for r in llm_server.requests) == 5
    # One recording and one snapshot hold every draw, in order.
    snapshot = yaml.safe_load((suite.path / "__snapshots__" / "test_it" / "test_sample.llm.yaml").read_text())
    assert [(c["draw"], json.dumps(c["output"])) for c in snapshot["calls"]] == list(enumerate(expected))
    cassette = yaml.safe_load((suite.path / "cassettes" / "test_it" / "test_sample.yaml").read_text())
    assert len(cassette["interactions"]) == 5

    for path in suite.path.glob("draw-*.json"):
        path.unlink()
    llm_server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    for _ in range(2):
        result = suite.runpytest("--seedrepro-mode=replay", "-v")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["test_it.py::test_sample PASSED (4/5 draws)*"])
        assert _outputs(suite) == recorded


@pytest.mark.parametrize(("min_pass", "passes"), [(0.8, True), (1.0, False)])
def test_the_gate_on_seeded_chat(
    suite: pytest.Pytester, llm_server: LLMServer, min_pass: float, passes: bool
) -> None:
    suite.makepyfile(test_it=CHAT.format(min_pass=min_pass, prompt=PROMPT))
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-v")
    seeds = [r.body["seed"] for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert len(seeds) == 5 and len(set(seeds)) == 5  # each draw its own seed
    if passes:
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["test_it.py::test_chat PASSED (4/5 draws)*"])
        assert (suite.path / "cassettes" / "test_it" / "test_chat.yaml").exists()
        return
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_it.py::test_chat FAILED (4/5 draws)*",
            "seedrepro: test_it.py::test_chat: 4/5 draws passed (min_pass 1.0)",
            "the first failing draw (3):",
            "*AssertionError: draw 3 fails*",
            "*- seedrepro draws -*",
            "draw 3: failed",
        ]
    )
    # A test whose gate failed writes nothing.
    assert not (suite.path / "cassettes").exists() and not (suite.path / "__snapshots__").exists()


def test_seeds_are_distinct_across_draws_and_a_seed_matrix(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.seed(1, 2, 3)
        @pytest.mark.draws(3)
        def test_matrix(seeded_llm):
            seeded_llm.complete("hi")
            assert seeded_llm.calls[-1].seed == seeded_llm.seed
        """
    )
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=3)
    seeds = [r.body["seed"] for r in llm_server.requests]
    assert len(seeds) == 9 and len(set(seeds)) == 9


def test_one_report_triple_per_test_under_xdist_and_in_junitxml(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it=CHAT.format(min_pass=1.0, prompt=PROMPT)
        + """

@pytest.mark.draws(4, min_pass=0.5)
def test_other(seeded_llm):
    seeded_llm.complete("other")

def test_plain(seeded_llm):
    seeded_llm.complete("plain")
"""
    )
    result = suite.runpytest("--seedrepro-mode=live", "--snapshot-update", "-n", "2", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=1)  # counted from the logged reports: one triple per test
    assert len(llm_server.requests) == 5 + 4 + 1
    cases = list(ET.parse(suite.path / "junit.xml").getroot().iter("testcase"))
    outcomes = {case.get("name"): [child.tag for child in case] for case in cases}
    assert outcomes == {"test_chat": ["failure"], "test_other": [], "test_plain": []}
    failure = next(case for case in cases if case.get("name") == "test_chat").find("failure")
    assert failure is not None
    assert "seedrepro: test_it.py::test_chat: 4/5 draws passed (min_pass 1.0)" in (
        failure.get("message") or ""
    )


def test_the_json_report_has_the_draws_figures(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it=CHAT.format(min_pass=0.8, prompt=PROMPT))
    result = suite.runpytest("--seedrepro-mode=live", "--snapshot-update", "--seedrepro-report=report.json")
    result.assert_outcomes(passed=1)
    report = json.loads((suite.path / "report.json").read_text())
    assert report["draws"] == [
        {
            "test": "test_it.py::test_chat",
            "n": 5,
            "passed": 4,
            "min_pass": 0.8,
            "outcomes": ["passed", "passed", "passed", "failed", "passed"],
        }
    ]
    result.stdout.fnmatch_lines(["draws: test_it.py::test_chat: 4/5 passed (min_pass 0.8)"])


@needs_responses_api
def test_a_recording_of_another_number_of_draws_fails_with_the_command_that_records_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    llm_server.sample_unseeded = True
    suite.makepyfile(test_it=RESPONSES.format(min_pass=0.5, prompt=PROMPT))
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_it" / "test_sample.yaml"
    before = cassette.read_bytes()
    suite.makepyfile(test_it=RESPONSES.format(min_pass=0.5, prompt=PROMPT).replace("draws(5", "draws(6"))
    result = suite.runpytest("--seedrepro-mode=replay")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*seedrepro: test_it.py::test_sample: the recording {cassette} holds 5 draw(s), the draws marker "
            "asks for 6; record them with: pytest --seedrepro-mode=record 'test_it.py::test_sample'"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert cassette.read_bytes() == before
    # The command it names does record the sixth draw, keeping the five.
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert len(yaml.safe_load(cassette.read_text())["interactions"]) == 6
    assert sum(r.path.endswith("/responses") for r in llm_server.requests) == 6


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("draws(0)", "@pytest.mark.draws takes a whole number of draws n >= 1, got 0 (int)"),
        ("draws('3')", "@pytest.mark.draws takes a whole number of draws n >= 1, got '3' (str)"),
        ("draws(True)", "@pytest.mark.draws takes a whole number of draws n >= 1, got True (bool)"),
        (
            "draws(3, min_pass=0)",
            "@pytest.mark.draws takes a min_pass above 0 and at most 1 (e.g. 0.8), got 0 (int)",
        ),
        (
            "draws(3, min_pass=1.5)",
            "@pytest.mark.draws takes a min_pass above 0 and at most 1 (e.g. 0.8), got 1.5 (float)",
        ),
        (
            "draws()",
            "@pytest.mark.draws takes n and min_pass (e.g. draws(5, min_pass=0.8)), got args=() kwargs={}",
        ),
    ],
)
def test_bad_marker_values_are_one_line_errors_at_set_up(
    suite: pytest.Pytester, llm_server: LLMServer, marker: str, message: str
) -> None:
    suite.makepyfile(
        test_it=f"""
        import pytest

        @pytest.mark.{marker}
        def test_bad(seeded_llm):
            seeded_llm.complete("never sent")
        """
    )
    result = suite.runpytest("--seedrepro-mode=live", "--strict-markers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"seedrepro: test_it.py::test_bad: {message}"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert not llm_server.requests


def test_the_marker_is_registered(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it=CHAT.format(min_pass=0.8, prompt=PROMPT))
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update", "--strict-markers").assert_outcomes(
        passed=1
    )


def test_snapshot_update_accepts_every_draw_together(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.draws(3)
        def test_chat(seeded_llm):
            seeded_llm.complete("hello")
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    snapshot = suite.path / "__snapshots__" / "test_it" / "test_chat.llm.yaml"
    seeds = [r.body["seed"] for r in llm_server.requests]
    llm_server.variant = "retrained"  # same fingerprint, other outputs: a regression
    result = suite.runpytest("--seedrepro-mode=rerecord")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*output changed*"])
    result = suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update")
    result.assert_outcomes(passed=1)
    calls = yaml.safe_load(snapshot.read_text())["calls"]
    expected = [
        llm_server.expected_text(
            seed=seed, model="gpt-4o-mini", temperature=None, messages=[{"role": "user", "content": "hello"}]
        )
        for seed in seeds
    ]
    assert [(c["draw"], c["output"]) for c in calls] == list(enumerate(expected))
    suite.runpytest("--seedrepro-mode=replay").assert_outcomes(passed=1)


def test_seedrepro_repeat_with_draws_is_one_usage_line(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it=CHAT.format(min_pass=0.8, prompt=PROMPT))
    result = suite.runpytest("--seedrepro-mode=live", "--seedrepro-repeat=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: seedrepro: --seedrepro-repeat cannot run @pytest.mark.draws tests (test_it.py::test_chat)*"]
    )
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not llm_server.requests


BREAKABLE = """
import os
import pytest

@pytest.mark.draws(3)
def test_chat(seeded_llm):
    seeded_llm.complete("hello")
    assert not (os.environ.get("BREAK_DRAW") == str(seeded_llm.draw)), "broken draw"
"""


@pytest.mark.parametrize("backend_changed", [True, False])
def test_below_the_gate_a_changed_backend_gets_the_policy_and_the_same_backend_fails(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch, backend_changed: bool
) -> None:
    suite.makepyfile(test_it=BREAKABLE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    snapshot = suite.path / "__snapshots__" / "test_it" / "test_chat.llm.yaml"
    cassette = suite.path / "cassettes" / "test_it" / "test_chat.yaml"
    files = snapshot.read_bytes(), cassette.read_bytes()
    llm_server.variant = "retrained"
    if backend_changed:
        llm_server.fingerprint = "fp_new"
    monkeypatch.setenv("BREAK_DRAW", "1")
    result = suite.runpytest("--seedrepro-mode=rerecord", "-rs")
    if backend_changed:
        result.assert_outcomes(skipped=1)  # the default policy, skip
        # The skip points at the test, as any test's skip for a backend change does.
        result.stdout.fnmatch_lines(
            [
                "SKIPPED (?/3 draws) [[]1[]] test_it.py:*: seedrepro: test_it.py::test_chat: the backend changed*"
            ]
        )
        result = suite.runpytest("--seedrepro-mode=rerecord", "--seedrepro-on-fingerprint-change=fail")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["seedrepro: test_it.py::test_chat: the backend changed and the output with it*"]
        )
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "seedrepro: test_it.py::test_chat: 2/3 draws passed (min_pass 1.0)",
                "the first failing draw (1):",
            ]
        )
        assert "output changed" not in result.stdout.str()
    assert (snapshot.read_bytes(), cassette.read_bytes()) == files  # nothing written


def test_each_draw_gets_fresh_function_fixtures_and_shares_the_others(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        EVENTS = []

        @pytest.fixture(scope="module")
        def shared():
            EVENTS.append("module up")
            yield object()
            EVENTS.append("module down")

        @pytest.fixture
        def fresh():
            EVENTS.append("function up")
            yield object()
            EVENTS.append("function down")

        SEEN = []

        @pytest.mark.draws(3)
        def test_drawn(seeded_llm, shared, fresh):
            # The objects themselves, kept alive: an id alone can be reused once its object is gone.
            SEEN.append((seeded_llm.draw, shared, fresh, seeded_llm))
            seeded_llm.complete("hi")
            assert [call.index for call in seeded_llm.draw_calls] == [seeded_llm.draw]
            assert len(seeded_llm.calls) == seeded_llm.draw + 1  # every draw's calls so far

        def test_after():
            assert EVENTS == ["module up"] + ["function up", "function down"] * 3
            assert [draw for draw, *_ in SEEN] == [0, 1, 2]
            assert len({id(shared) for _, shared, _, _ in SEEN}) == 1
            assert len({id(fresh) for _, _, fresh, _ in SEEN}) == 3
            assert len({id(llm) for *_, llm in SEEN}) == 3
        """
    )
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=2)


def test_only_drifted_refreshes_a_drifted_draws_test(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.draws(2)
        def test_drawn(seeded_llm):
            seeded_llm.complete("a")

        def test_b(seeded_llm):
            seeded_llm.complete("b")
        """
    )
    live = "--seedrepro-mode=live"
    suite.runpytest(live, "--snapshot-update").assert_outcomes(passed=2)
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "new backend"
    suite.runpytest(live, "--seedrepro-on-fingerprint-change=skip", "-k", "drawn").assert_outcomes(
        skipped=1, deselected=1
    )
    result = suite.runpytest(live, "--snapshot-update", "--seedrepro-only-drifted", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["test_it.py::test_drawn PASSED (2/2 draws)*"])
    suite.runpytest(live).assert_outcomes(passed=1, skipped=1)  # test_b was not refreshed


def test_the_html_report_shows_the_draws(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it=CHAT.format(min_pass=0.8, prompt=PROMPT))
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update", "--seedrepro-html=r.html").assert_outcomes(
        passed=1
    )
    page = (suite.path / "r.html").read_text()
    assert "<h2>Draws</h2>" in page
    assert "<td><code>test_it.py::test_chat</code></td><td>4/5</td><td>0.8</td>" in page
    assert "3: failed" in page


@needs_responses_api
@pytest.mark.parametrize("mode", ["live", "rerecord"])
def test_new_unseeded_draws_are_judged_by_the_gate_not_by_exact_text(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str
) -> None:
    llm_server.sample_unseeded = True  # every Responses answer is a new sample
    suite.makepyfile(test_it=RESPONSES.format(min_pass=0.8, prompt=PROMPT))
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    written = {p: p.read_bytes() for p in suite.path.rglob("*.yaml")}
    first = _outputs(suite)
    # Five new samples: other text under the same backend, the same 4/5 by the test's own assertions.
    result = suite.runpytest(f"--seedrepro-mode={mode}", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_it.py::test_sample PASSED (4/5 draws)*"])
    assert _outputs(suite) != first  # really other answers
    result.stdout.fnmatch_lines(["varied (no seed): test_it.py::test_sample call *"])
    assert {p: p.read_bytes() for p in suite.path.rglob("*.yaml")} == written


def test_a_draw_that_made_no_call_does_not_make_the_recording_look_short(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.draws(4, min_pass=0.5)
        def test_chat(seeded_llm):
            assert seeded_llm.draw != 1, "draw 1 fails before its call"
            seeded_llm.complete("name a colour")
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-v").assert_outcomes(passed=1)
    llm_server.stop()
    result = suite.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_it.py::test_chat PASSED (3/4 draws)*"])
