"""The server receives the pinned seed and parameters, whatever client sent the request."""

from __future__ import annotations

import openai
import pytest

from llmserver import LLMServer

pytestmark = pytest.mark.usefixtures("llm_server")

# These tests look at requests, not at verdicts: every run writes its snapshots.
LIVE = ("--seedrepro-mode=live", "--snapshot-update")


def completion_bodies(server: LLMServer) -> list[dict]:
    return [r.body for r in server.requests if r.path.endswith("completions") and r.body is not None]


def test_default_seed_fills_requests_without_a_seed(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        """
        def test_it(seeded_llm):
            seeded_llm.complete("hello")
            assert seeded_llm.seed == 1234
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=1)
    (body,) = completion_bodies(llm_server)
    assert body["seed"] == 1234
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_seed_option_changes_the_default_seed(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        """
        def test_it(seeded_llm):
            seeded_llm.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        """
    )
    suite.runpytest(*LIVE, "--seedrepro-seed=77").assert_outcomes(passed=1)
    assert [b["seed"] for b in completion_bodies(llm_server)] == [77]


def test_default_seed_keeps_a_seed_the_call_chose(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        """
        def test_it(seeded_llm):
            seeded_llm.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], seed=5)
        """
    )
    result = suite.runpytest(*LIVE, "-W", "error::pytest_seedrepro.SeedReproWarning")
    result.assert_outcomes(passed=1)
    assert [b["seed"] for b in completion_bodies(llm_server)] == [5]


def test_marker_seed_and_params_merge_module_class_function(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        """
        import pytest

        pytestmark = [pytest.mark.seed(1), pytest.mark.llm_params(model="module-model", temperature=0.5, top_p=0.9)]

        @pytest.mark.llm_params(temperature=0.1)
        class TestGroup:
            @pytest.mark.seed(99)
            @pytest.mark.llm_params(max_tokens=7)
            def test_nearest(self, seeded_llm):
                seeded_llm.complete("a")
                assert seeded_llm.seed == 99
                assert seeded_llm.params == {"model": "module-model", "temperature": 0.1, "top_p": 0.9, "max_tokens": 7}

        def test_module_only(seeded_llm):
            seeded_llm.complete("b")
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=2)
    first, second = completion_bodies(llm_server)
    assert {k: first[k] for k in ("seed", "model", "temperature", "top_p", "max_tokens")} == {
        "seed": 99,
        "model": "module-model",
        "temperature": 0.1,
        "top_p": 0.9,
        "max_tokens": 7,
    }
    assert {k: second[k] for k in ("seed", "model", "temperature", "top_p")} == {
        "seed": 1,
        "model": "module-model",
        "temperature": 0.5,
        "top_p": 0.9,
    }
    assert "max_tokens" not in second


def test_marker_overriding_a_call_value_warns_naming_each_key(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        """
        import pytest
        from pytest_seedrepro import SeedReproWarning

        @pytest.mark.seed(3)
        @pytest.mark.llm_params(temperature=0)
        def test_it(seeded_llm):
            with pytest.warns(SeedReproWarning) as record:
                seeded_llm.client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}], seed=8, temperature=0.7
                )
            messages = sorted(str(w.message) for w in record)
            # The warning points at the line that made the call, not into the SDK or the plugin.
            assert {w.filename for w in record} == {__file__}
            assert len(messages) == 2, messages
            assert "'seed'" in messages[0] and "test_it" in messages[0]
            assert "'temperature'" in messages[1]
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=1)
    (body,) = completion_bodies(llm_server)
    assert (body["seed"], body["temperature"]) == (3, 0)


def test_same_value_as_marker_does_not_warn(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.seed(3)
        def test_it(seeded_llm):
            seeded_llm.client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], seed=3)
        """
    )
    suite.runpytest(*LIVE, "-W", "error::pytest_seedrepro.SeedReproWarning").assert_outcomes(passed=1)


def test_async_gather_streams_and_legacy_completions_are_pinned(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.seed(42)
        @pytest.mark.llm_params(temperature=0.3)
        @pytest.mark.asyncio
        async def test_gather(seeded_llm):
            prompts = [f"prompt {i}" for i in range(5)]
            texts = await asyncio.gather(*(seeded_llm.acomplete(p, model="m") for p in prompts))
            assert [c.request["messages"][0]["content"] for c in seeded_llm.calls] == prompts
            assert [c.output for c in seeded_llm.calls] == list(texts)

        @pytest.mark.seed(43)
        def test_stream(seeded_llm):
            chunks = seeded_llm.client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "s"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            (call,) = seeded_llm.calls
            assert call.stream and call.output == text and text

        @pytest.mark.seed(44)
        @pytest.mark.asyncio
        async def test_async_stream(seeded_llm):
            text = await seeded_llm.acomplete("as", stream=True)
            assert seeded_llm.calls[0].output == text

        @pytest.mark.seed(45)
        def test_legacy(seeded_llm):
            out = seeded_llm.client.completions.create(model="m", prompt="once upon")
            streamed = seeded_llm.client.completions.create(model="m", prompt="once upon", stream=True)
            joined = "".join(c.choices[0].text for c in streamed)
            assert [c.output for c in seeded_llm.calls] == [out.choices[0].text, joined]
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=4)
    bodies = completion_bodies(llm_server)
    assert sorted(b["seed"] for b in bodies) == [42] * 5 + [43, 44, 45, 45]
    assert all(b["temperature"] == 0.3 for b in bodies if b["seed"] == 42)
    assert {b.get("stream", False) for b in bodies if b["seed"] in (43, 44)} == {True}
    legacy = [r for r in llm_server.requests if r.path == "/v1/completions"]
    assert [r.body["prompt"] for r in legacy] == ["once upon", "once upon"]


def test_client_built_by_the_code_under_test_is_pinned(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        app="""
        import openai

        def summarise(text):
            with openai.OpenAI() as client:  # reads OPENAI_API_KEY / OPENAI_BASE_URL like real apps
                reply = client.chat.completions.create(model="app-model", messages=[{"role": "user", "content": text}])
            return reply.choices[0].message.content

        async def asummarise(text):
            async with openai.AsyncOpenAI() as client:
                reply = await client.chat.completions.create(
                    model="app-model", messages=[{"role": "user", "content": text}]
                )
            return reply.choices[0].message.content
        """,
        test_app="""
        import pytest
        import app

        @pytest.mark.seed(7)
        @pytest.mark.llm_params(temperature=0)
        def test_app(seeded_llm):
            assert app.summarise("long text")
            (call,) = seeded_llm.calls
            assert call.request["seed"] == 7 and call.replayed is False

        @pytest.mark.seed(8)
        @pytest.mark.asyncio
        async def test_async_app(seeded_llm):
            assert await app.asummarise("other text")
            assert len(seeded_llm.calls) == 1
        """,
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=2)
    bodies = completion_bodies(llm_server)
    assert [(b["model"], b["seed"], b.get("temperature")) for b in bodies] == [
        ("app-model", 7, 0),
        ("app-model", 8, None),
    ]


def test_client_built_outside_a_seeded_test_is_left_alone(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        f"""
        import openai

        def test_plain():
            with openai.OpenAI(base_url="{llm_server.base_url}", api_key="sk-x") as client:
                client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "x"}}])

        def test_seeded(seeded_llm):
            seeded_llm.complete("y")
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=2)
    bodies = completion_bodies(llm_server)
    assert [b.get("seed") for b in bodies] == [None, 1234]


@pytest.mark.skipif(not hasattr(openai.OpenAI, "responses"), reason="this openai SDK has no Responses API")
def test_calls_hold_parameters_output_fingerprint_usage_in_issue_order(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    llm_server.fingerprint = "fp_calls"
    suite.makepyfile(
        """
        import json, pytest

        @pytest.mark.llm_params(model="m", temperature=0.2, max_tokens=6)
        def test_it(seeded_llm):
            first = seeded_llm.complete("one")
            second = seeded_llm.client.responses.create(model="m", input="two").output_text
            third = seeded_llm.complete("three", stream=True, stream_options={"include_usage": True})
            with open("calls.json", "w") as f:
                json.dump([
                    {"endpoint": c.endpoint, "request": c.request, "output": c.output, "pinned": c.pinned,
                     "fingerprint": c.system_fingerprint, "usage": c.usage, "replayed": c.replayed,
                     "stream": c.stream, "model": c.model}
                    for c in seeded_llm.calls
                ], f)
            assert [c.output for c in seeded_llm.calls] == [first, second, third]
        """
    )
    suite.runpytest(*LIVE).assert_outcomes(passed=1)
    import json

    calls = json.loads((suite.path / "calls.json").read_text())
    assert [c["endpoint"] for c in calls] == ["/chat/completions", "/responses", "/chat/completions"]
    assert [c["pinned"] for c in calls] == [True, True, True]
    assert [c["stream"] for c in calls] == [False, False, True]
    assert calls[0]["output"] == llm_server.expected_text(
        seed=1234, model="m", temperature=0.2, messages=[{"role": "user", "content": "one"}], max_tokens=6
    )
    assert calls[2]["output"] == llm_server.expected_text(
        seed=1234, model="m", temperature=0.2, messages=[{"role": "user", "content": "three"}], max_tokens=6
    )
    # The Responses API takes no seed: its llm_params are pinned (max_tokens as max_output_tokens), no seed.
    assert "seed" not in calls[1]["request"]
    assert (calls[1]["request"]["temperature"], calls[1]["request"]["max_output_tokens"]) == (0.2, 6)
    assert calls[1]["output"] == llm_server.expected_text(
        seed=None, model="m", temperature=0.2, prompt="two", max_tokens=6
    )
    assert [c["fingerprint"] for c in calls] == ["fp_calls", None, "fp_calls"]
    assert calls[0]["usage"]["completion_tokens"] == 6
    assert calls[2]["usage"]["completion_tokens"] == 6
    assert {c["replayed"] for c in calls} == {False}


def test_a_seed_matrix_runs_the_test_once_per_seed_with_its_own_files(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.seed(1, 2, 3)
        @pytest.mark.parametrize("topic", ["tea", "coffee"])
        def test_matrix(seeded_llm, topic):
            seeded_llm.complete(f"tell me about {topic}")
            assert seeded_llm.calls[0].request["seed"] == seeded_llm.seed

        @pytest.mark.seed(7)
        def test_single(seeded_llm):
            seeded_llm.complete("one seed")
        """
    )
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-v")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        ["*test_matrix[[]seed=1-tea[]] PASSED*", "*test_matrix[[]seed=3-coffee[]] PASSED*"]
    )
    seeds = sorted(r.body["seed"] for r in llm_server.requests if r.path.endswith("/chat/completions"))
    assert seeds == [1, 1, 2, 2, 3, 3, 7]
    cassettes = sorted(p.name for p in (suite.path / "cassettes" / "test_it").glob("*.yaml"))
    assert "test_single.yaml" in cassettes  # seed(7) keeps today's file name
    assert "test_matrix[seed=2-tea].yaml" in cassettes and len(cassettes) == 7
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=7)
