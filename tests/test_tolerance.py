"""Unseeded calls that varied, ``seed(None)`` and ``@pytest.mark.llm_tolerance``.

The rules on plain data first (``judgement.judge``'s ``unseeded``, the
tolerance score, ``pin_body``'s "no seed"), then through the real SDK, the
test server and real pytest runs, in ``live``, ``record``/``rerecord`` and
``replay``.
"""

from __future__ import annotations

import json

import openai
import pytest

from llmserver import LLMServer
from pytest_seedrepro import judgement
from pytest_seedrepro.pinning import pin_body
from pytest_seedrepro.repeat import difflib_similarity

#: openai < 1.66 (the floor is 1.55.3) has no Responses API in the SDK.
needs_responses_api = pytest.mark.skipif(
    not hasattr(openai.OpenAI, "responses"), reason="this openai SDK (< 1.66) has no Responses API"
)

LIVE = "--seedrepro-mode=live"
SNAPSHOT = "__snapshots__/test_it/test_it.llm.yaml"

# Pure rules ---------------------------------------------------------------------------------------


def responses_entry(
    output: str, *, history: str = "hi", model: str = "m", backend: str = "m", seed: int | None = None
) -> dict:
    request: dict = {"input": history, "model": model}
    if seed is not None:
        request["seed"] = seed
    return {
        "endpoint": "/responses",
        "system_fingerprint": None,
        "backend": backend,
        "response_model": model,
        "request": request,
        "output": output,
    }


def no_seed(entry: dict) -> bool:
    return "seed" not in entry["request"]


def test_an_unseeded_call_that_varied_is_no_regression_and_what_follows_is_its_consequence() -> None:
    """A conversation: call 0 varied, so call 1's history changed with it."""
    stored = [responses_entry("a"), responses_entry("b", history="hi a")]
    current = [
        responses_entry("A"),
        responses_entry("B", history="hi A"),
        responses_entry("C", history="hi A B"),
    ]
    found = judgement.judge(stored, current, unseeded=no_seed)
    assert found.divergence is not None
    assert (found.divergence.kind, found.divergence.position) == ("varied", 0)
    assert not found.fails
    assert found.consequences == ["call 1: request changed (input)", "1 call(s) more than the snapshot"]


def test_without_the_unseeded_rule_the_same_change_is_a_regression() -> None:
    found = judgement.judge([responses_entry("a")], [responses_entry("A")])
    assert found.divergence is not None and found.divergence.kind == "output" and found.fails


@pytest.mark.parametrize(
    ("current", "kind", "at"),
    [
        # the first divergence is a request change: no consequence of anything, it fails
        ([responses_entry("a", history="changed"), responses_entry("B")], "request", 0),
        ([responses_entry("a"), responses_entry("b", history="changed")], "request", 1),
        # a seeded call keeps exact comparison
        ([responses_entry("A", seed=1), responses_entry("b")], "output", 0),
        # the backend changed too: the fingerprint policy, as before
        ([responses_entry("A", backend="m2"), responses_entry("b")], "backend", 0),
        # equal first, then varied
        ([responses_entry("a"), responses_entry("B")], "varied", 1),
    ],
)
def test_what_an_unseeded_call_still_diverges_on(current: list[dict], kind: str, at: int) -> None:
    stored = [
        responses_entry("a", seed=1 if current[0]["request"].get("seed") else None),
        responses_entry("b"),
    ]
    found = judgement.judge(stored, current, unseeded=no_seed)
    assert found.divergence is not None
    assert (found.divergence.kind, found.divergence.position) == (kind, at)
    assert found.fails is (kind in ("request", "output"))


@pytest.mark.parametrize(
    ("expected", "actual", "score"),
    [
        ("same text", "same text", 1.0),
        # JSON equal once parsed, whatever its layout or key order
        ('{"a": 1, "b": [1, 2]}', '{\n  "b": [1, 2],\n  "a": 1\n}', 1.0),
        # a tool-call line that differs is a change, however alike the rest is
        ("text\ntool_call call_1: f({})", 'text\ntool_call call_1: f({"x": 1})', 0.0),
        ("tool_call call_1: f({})", "tool_call call_1: f({})\ntool_call call_2: g({})", 0.0),
    ],
)
def test_tolerance_score_fixed_points(expected: str, actual: str, score: float) -> None:
    assert judgement.tolerance_score(expected, actual, difflib_similarity) == score


@pytest.mark.parametrize(
    ("a", "b", "ratio"),
    [
        ("abcd", "abce", 0.75),  # 2 x 3 characters in common / 8 characters
        ("abc", "abc", 1.0),
        ("abc", "xyz", 0.0),
        ("one two", "one six", 2 * 4 / 14),  # "one " and nothing else
    ],
)
def test_difflib_similarity_is_the_ratio_of_characters_in_common(a: str, b: str, ratio: float) -> None:
    assert difflib_similarity(a, b) == pytest.approx(ratio)


def test_tolerance_score_is_the_similarity_of_the_texts_otherwise() -> None:
    old, new = "one two three four five", "one two three four six"
    assert judgement.tolerance_score(old, new, difflib_similarity) == difflib_similarity(old, new)
    # JSON that differs once parsed: the texts' similarity, not 1.0 and not 0.0
    a, b = '{"answer": "yes it is"}', '{"answer": "yes it was"}'
    assert judgement.tolerance_score(a, b, difflib_similarity) == difflib_similarity(a, b)
    # the same tool-call lines: only the text around them is measured
    calls = "\ntool_call call_1: f({})"
    assert judgement.tolerance_score("abc" + calls, "abd" + calls, lambda x, y: 0.5 if x != y else 1.0) == 0.5
    # the similarity hook sees the text without the tool-call lines
    seen: list[tuple[str, str]] = []
    judgement.tolerance_score("abc" + calls, "abd" + calls, lambda x, y: seen.append((x, y)) or 0.5)
    assert seen == [("abc", "abd")]


@pytest.mark.parametrize(
    ("body", "expected", "overridden"),
    [
        ({}, {}, []),  # the default seed is not filled in
        ({"seed": 5}, {}, ["seed"]),  # a seed the call passed is removed, and said so
        ({"seed": None}, {}, []),
        ({"seed": 5, "temperature": 1}, {"temperature": 0}, ["temperature", "seed"]),
    ],
)
def test_pin_body_with_no_seed(body: dict, expected: dict, overridden: list) -> None:
    pinned, changed = pin_body(
        body, marker_seed=None, default_seed=9, params={"temperature": 0}, no_seed=True
    )
    assert pinned == {"temperature": 0, **expected}
    assert "seed" not in pinned
    assert changed == overridden


# Through the test server -------------------------------------------------------------------------

RESPONSES_TEST = """
    import os

    def test_it(seeded_llm):
        client = seeded_llm.client
        first = client.responses.create(model="gpt-4o-mini", input=os.environ.get("PROMPT", "hello"))
        # a conversation: the second call carries the first answer
        client.responses.create(
            model="gpt-4o-mini",
            input=[
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": first.output_text},
                {"role": "user", "content": "and then?"},
            ],
        )
"""


def files(pytester: pytest.Pytester) -> dict[str, bytes]:
    return {
        str(path.relative_to(pytester.path)): path.read_bytes()
        for path in sorted(pytester.path.rglob("*"))
        if path.is_file() and ("__snapshots__" in path.parts or "cassettes" in str(path))
    }


def report(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "report.json").read_text())


@needs_responses_api
def test_a_responses_test_whose_output_varied_passes_listed_and_keeps_its_files(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(test_it=RESPONSES_TEST)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    assert any("cassettes" in name for name in before) and SNAPSHOT in before

    llm_server.variant = "another sample"
    for mode in ("live", "rerecord"):
        result = suite.runpytest(f"--seedrepro-mode={mode}", "--seedrepro-report=report.json")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["varied (no seed): test_it.py::test_it call 0"])
        # call 1 is the consequence of call 0's new answer: not listed on its own
        assert "test_it.py::test_it call 1" not in result.stdout.str()
        assert report(suite)["varied"] == [{"test": "test_it.py::test_it", "call": 0}]
        assert files(suite) == before, mode
    # replay answers what was recorded: nothing varied
    result = suite.runpytest("--seedrepro-mode=replay", "--seedrepro-report=report.json")
    result.assert_outcomes(passed=1)
    assert "varied (no seed)" not in result.stdout.str()
    assert files(suite) == before

    # A changed request is no consequence of anything: it still fails.
    monkeypatch.setenv("PROMPT", "something else")
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*call 0 (seed None, model gpt-4o-mini): request parameters changed*"])
    assert files(suite) == before


@needs_responses_api
def test_the_tests_own_assertions_decide_an_unseeded_call(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        def test_it(seeded_llm):
            text = seeded_llm.client.responses.create(model="gpt-4o-mini", input="hello").output_text
            assert "zebra" not in text, text
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    llm_server.edit_content = lambda text: text + " zebra"
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 'zebra' not in *"])
    assert files(suite) == before


def test_a_seeded_chat_call_with_the_same_change_still_fails(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    seeded_llm.complete('hello')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.variant = "another sample"
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the output changed but the fingerprint did not*"])
    assert "varied (no seed)" not in result.stdout.str()


@pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproWarning")
def test_seed_none_sends_no_seed_and_its_chat_call_may_vary(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.seed(None)
        def test_it(seeded_llm):
            assert seeded_llm.seed is None
            seeded_llm.complete("hello")
            seeded_llm.client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}], seed=5
            )
        """
    )
    result = suite.runpytest(LIVE, "--snapshot-update", "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*a marker pinned 'seed', overriding the value the call passed*"])
    bodies = [r.body for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert len(bodies) == 2 and all(body is not None and "seed" not in body for body in bodies)
    before = files(suite)

    llm_server.variant = "another sample"
    result = suite.runpytest(LIVE, "-W", "default")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["varied (no seed): test_it.py::test_it call 0"])
    assert files(suite) == before


TOLERANCE_TEST = """
    import pytest

    pytestmark = pytest.mark.llm_tolerance({module})

    class TestIt:
        @pytest.mark.llm_tolerance({function})
        def test_it(self, seeded_llm):
            seeded_llm.complete("hello")
"""


def one_word(text: str) -> str:
    """The answer with its last word replaced."""
    return text.rsplit(" ", 1)[0] + " zebra"


@pytest.mark.parametrize("mode", ["live", "rerecord"])
def test_a_small_change_passes_within_tolerance_and_a_high_threshold_fails_it(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str
) -> None:
    suite.makepyfile(test_it=TOLERANCE_TEST.format(module=0.99, function=0.8))
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    stored = llm_server.requests[-1].body
    assert stored is not None
    llm_server.edit_content = one_word
    answer = llm_server.expected_text(
        seed=stored["seed"],
        model=stored["model"],
        temperature=stored.get("temperature"),
        messages=stored["messages"],
        max_tokens=stored.get("max_tokens"),
    )
    expected = difflib_similarity(answer, one_word(answer))
    assert 0.8 <= expected < 0.99

    # The nearest marker (the function's 0.8) wins over the module's 0.99.
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--seedrepro-report=report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"within tolerance: test_it.py::TestIt::test_it call 0: {expected:.2f} >= 0.80"]
    )
    assert report(suite)["within_tolerance"] == [
        {"test": "test_it.py::TestIt::test_it", "call": 0, "similarity": expected, "threshold": 0.8}
    ]
    assert files(suite) == before

    # A threshold above the change's similarity: exact comparison's failure.
    suite.makepyfile(test_it=TOLERANCE_TEST.format(module=0.5, function=0.99))
    result = suite.runpytest(f"--seedrepro-mode={mode}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the output changed but the fingerprint did not*"])
    assert "within tolerance" not in result.stdout.str()
    assert files(suite) == before


def test_without_the_marker_nothing_changes(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it="def test_it(seeded_llm):\n    seeded_llm.complete('hello')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.edit_content = one_word
    suite.runpytest(LIVE).assert_outcomes(failed=1)


def test_structured_output_is_compared_as_parsed_json(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.llm_tolerance(1.0)
        def test_it(seeded_llm):
            seeded_llm.complete("hello", response_format={"type": "json_object"})
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    llm_server.edit_content = lambda text: json.dumps({"extra": 1, **json.loads(text)}, indent=2)
    suite.runpytest(LIVE).assert_outcomes(failed=1)  # another value: not equal
    # The same JSON, laid out anew and its keys reordered: equal, even at 1.0.
    llm_server.edit_content = lambda text: json.dumps(dict(reversed(json.loads(text).items())), indent=2)
    result = suite.runpytest(LIVE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["within tolerance: test_it.py::test_it call 0: 1.00 >= 1.00"])
    assert files(suite) == before


def test_a_changed_tool_call_line_fails_under_tolerance(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

        @pytest.mark.llm_tolerance(0.3)
        def test_it(seeded_llm):
            seeded_llm.complete("weather?", tools=TOOLS)
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    llm_server.variant = "other arguments"
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the output changed but the fingerprint did not*", "*tool_call*get_weather*"]
    )
    assert files(suite) == before


def test_the_compare_hook_wins_over_the_tolerance(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makeconftest(
        """
        def pytest_seedrepro_compare(expected, actual, call):
            return False
        """
    )
    suite.makepyfile(test_it=TOLERANCE_TEST.format(module=0.1, function=0.1))
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.edit_content = one_word
    suite.runpytest(LIVE).assert_outcomes(failed=1)
    # and the similarity hook is the measure when it answers
    suite.makeconftest(
        """
        def pytest_seedrepro_similarity(a, b, call):
            return 0.42
        """
    )
    suite.makepyfile(test_it=TOLERANCE_TEST.format(module=0.1, function=0.4))
    result = suite.runpytest(LIVE)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["within tolerance: test_it.py::TestIt::test_it call 0: 0.42 >= 0.40"])


def test_every_choice_is_judged_under_tolerance(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.llm_tolerance(0.8)
        def test_it(seeded_llm):
            seeded_llm.complete("hello", n=2)
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.edit_content = one_word
    suite.runpytest(LIVE).assert_outcomes(passed=1)
    # choice 0 changes by a word, choice 1 entirely: the call is not within tolerance
    edits = iter([one_word, lambda text: "zebra"])
    llm_server.edit_content = lambda text: next(edits)(text)
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the output changed but the fingerprint did not*"])


@needs_responses_api
def test_an_unseeded_call_whose_backend_changed_too_gets_the_fingerprint_policy(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=RESPONSES_TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = files(suite)
    # The Responses API has no fingerprint: its response model is the backend identity.
    llm_server.variant, llm_server.model_override = "another sample", "gpt-4o-mini-2099-01-01"
    result = suite.runpytest(LIVE, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the backend changed and the output with it*"])
    assert "varied (no seed)" not in result.stdout.str()
    suite.runpytest(LIVE, "--seedrepro-on-fingerprint-change=fail").assert_outcomes(failed=1)
    assert files(suite) == before
