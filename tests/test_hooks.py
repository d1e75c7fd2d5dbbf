"""Each hook changes the outcome the way its docstring says."""

from __future__ import annotations

import json

import pytest
import yaml

from llmserver import LLMServer

LIVE = "--seedrepro-mode=live"
SNAPSHOT = "__snapshots__/test_it/test_it.llm.yaml"
TEST = "def test_it(seeded_llm):\n    seeded_llm.complete('x')\n"

pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproFingerprintWarning")


def stored_calls(pytester: pytest.Pytester) -> list[dict]:
    return yaml.safe_load((pytester.path / SNAPSHOT).read_text())["calls"]


def test_request_hook_adjusts_the_outgoing_body(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makeconftest(
        """
        def pytest_seedrepro_request(body, item):
            body["user"] = "ci-" + item.name
            body["temperature"] = 0.25
        """
    )
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    (body,) = [r.body for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert (body["user"], body["temperature"], body["seed"]) == ("ci-test_it", 0.25, 1234)
    assert stored_calls(suite)[0]["request"]["user"] == "ci-test_it"


def test_normalize_hook_masks_what_may_change(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makeconftest(
        """
        def pytest_seedrepro_normalize(output, call):
            return " ".join("WORD" if len(w) > 5 else w for w in output.split(" "))
        """
    )
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    output = stored_calls(suite)[0]["output"]
    assert "WORD" in output
    assert not any(len(w) > 5 and w != "WORD" for w in output.replace("\n", " ").split(" "))
    # Without the hook the same stored text no longer matches: the hook is what made it pass.
    suite.runpytest(LIVE).assert_outcomes(passed=1)
    (suite.path / "conftest.py").unlink()
    suite.runpytest(LIVE).assert_outcomes(failed=1)


def test_normalize_hooks_chain(suite: pytest.Pytester) -> None:
    suite.makeconftest(
        """
        import pytest

        class Mask:
            @pytest.hookimpl(tryfirst=True)
            def pytest_seedrepro_normalize(self, output, call):
                return "A(" + output[:3] + ")"

        class Wrap:
            @pytest.hookimpl(trylast=True)
            def pytest_seedrepro_normalize(self, output, call):
                return "B(" + output + ")"

        def pytest_configure(config):
            config.pluginmanager.register(Mask())
            config.pluginmanager.register(Wrap())
        """
    )
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    output = stored_calls(suite)[0]["output"]
    assert output.startswith("B(A(") and output.endswith("))")  # tryfirst ran first, trylast on its result


def test_compare_hook_accepts_an_equivalent_output(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makeconftest(
        """
        def pytest_seedrepro_compare(expected, actual, call):
            # equivalent when they share most words
            a, b = set(expected.split()), set(actual.split())
            return len(a & b) >= 0.1 * max(len(a), 1) if call.seed == 1234 else None
        """
    )
    suite.makepyfile(test_it="import pytest\n@pytest.mark.llm_params(max_tokens=40)\n" + TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    before = (suite.path / SNAPSHOT).read_bytes()
    llm_server.variant = "slightly different"
    suite.runpytest(LIVE).assert_outcomes(passed=1)
    assert (suite.path / SNAPSHOT).read_bytes() == before  # equivalent output never rewrites it
    (suite.path / "conftest.py").write_text(
        "def pytest_seedrepro_compare(expected, actual, call):\n    return False\n"
    )
    llm_server.variant = ""
    suite.runpytest(LIVE).assert_outcomes(failed=1)  # even an identical output, if the hook says so


@pytest.mark.parametrize(
    ("returned", "outcome"), [("'fail'", "failed"), ("'warn'", "passed"), ("None", "skipped")]
)
def test_fingerprint_changed_hook_decides_the_policy(
    suite: pytest.Pytester, llm_server: LLMServer, returned: str, outcome: str
) -> None:
    suite.makeconftest(
        f"""
        def pytest_seedrepro_fingerprint_changed(item, old, new, call):
            assert (old, new, call.seed) == ("fp_test_1", "fp_new", 1234)
            return {returned}
        """
    )
    suite.makepyfile(test_it="import pytest\n@pytest.mark.on_fingerprint_change('skip')\n" + TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    suite.runpytest(LIVE).assert_outcomes(**{outcome: 1})


def test_fingerprint_changed_hook_returning_nonsense_is_one_line(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(
        "def pytest_seedrepro_fingerprint_changed(item, old, new, call):\n    return 'ignore'\n"
    )
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_new", "new"
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: test_it.py::test_it: pytest_seedrepro_fingerprint_changed returned 'ignore'; expected one of skip, warn, fail or None"
        ]
    )


def test_fingerprint_hook_gives_a_constant_fingerprint_server_an_identity(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Ollama answers fp_ollama whatever runs behind it; the response's model is a better identity."""
    llm_server.fingerprint_style = "constant"
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    llm_server.model_override, llm_server.variant = "llama3.2:3b-q8", "new weights"
    # Without the hook: same fingerprint, different output -> a regression.
    suite.runpytest(LIVE).assert_outcomes(failed=1)
    suite.makeconftest("def pytest_seedrepro_fingerprint(call):\n    return call.model\n")
    llm_server.model_override, llm_server.variant = None, ""
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    (call,) = stored_calls(suite)
    assert (call["system_fingerprint"], call["backend"]) == ("fp_ollama", "gpt-4o-mini")
    llm_server.model_override, llm_server.variant = "llama3.2:3b-q8", "new weights"
    result = suite.runpytest(LIVE, "-rs")
    result.assert_outcomes(skipped=1)  # the backend identity changed: the policy, not a failure
    result.stdout.fnmatch_lines(["*system_fingerprint gpt-4o-mini -> llama3.2:3b-q8*"])


def test_request_hook_with_the_old_argument_name_is_refused_naming_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    """``request`` was the argument's name before any release: pluggy refuses it like any unknown one."""
    suite.makeconftest(
        """
        def pytest_seedrepro_request(request, item):
            request["user"] = "old-style"
        """
    )
    suite.makepyfile(test_it=TEST)
    result = suite.runpytest(LIVE, "--snapshot-update")
    assert result.ret != pytest.ExitCode.OK
    result.stderr.fnmatch_lines(
        ["*pytest_seedrepro_request*", "*{'request'}*can not be found in the hookspec*"]
    )
    assert not [r for r in llm_server.requests if r.path.endswith("/chat/completions")]


def test_a_conftest_hook_applies_only_to_the_tests_below_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.mkpydir("a")
    suite.mkpydir("b")
    (suite.path / "a" / "conftest.py").write_text(
        "def pytest_seedrepro_request(body, item):\n"
        "    body['user'] = 'from-a'\n"
        "def pytest_seedrepro_normalize(output, call):\n"
        "    return 'NORMALISED BY A'\n"
    )
    (suite.path / "a" / "test_a.py").write_text(TEST)
    (suite.path / "b" / "test_b.py").write_text(TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=2)
    bodies = {r.body.get("user") for r in llm_server.requests if r.path.endswith("/chat/completions")}
    assert bodies == {"from-a", None}
    snapshot_b = (suite.path / "b" / "__snapshots__" / "test_b" / "test_it.llm.yaml").read_text()
    snapshot_a = (suite.path / "a" / "__snapshots__" / "test_a" / "test_it.llm.yaml").read_text()
    assert "NORMALISED BY A" in snapshot_a and "from-a" in snapshot_a
    assert "NORMALISED BY A" not in snapshot_b and "from-a" not in snapshot_b
    suite.runpytest(LIVE, "b").assert_outcomes(passed=1)  # b alone agrees with what the whole run wrote


def test_a_normalize_wrapper_wraps_the_result(suite: pytest.Pytester) -> None:
    suite.makeconftest(
        """
        import pytest

        def pytest_seedrepro_normalize(output, call):
            return output[:10]

        class Wrapper:
            @pytest.hookimpl(wrapper=True)
            def pytest_seedrepro_normalize(self, output, call):
                result = yield
                return "[" + (output if result is None else result) + "]"

        def pytest_configure(config):
            config.pluginmanager.register(Wrapper())
        """
    )
    suite.makepyfile(test_it=TEST)
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    output = stored_calls(suite)[0]["output"]
    assert "generator" not in output
    assert output.startswith("[") and output.endswith("]") and len(output) == 12


def test_replayed_comes_from_the_recording_not_from_the_transport(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        import json
        import openai
        from pytest_seedrepro.session import http_module

        ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "mocked"}, "finish_reason": "stop"}]}

        def test_a(seeded_llm):
            http = http_module(openai.DefaultHttpxClient)
            transport = http.MockTransport(lambda request: http.Response(200, json=ANSWER))
            client = openai.OpenAI(http_client=http.Client(transport=transport))
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
            seeded_llm.complete("through the recording")
            with open("replayed.json", "w") as f:
                json.dump([c.replayed for c in seeded_llm.calls], f)
        """
    )
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    assert json.loads((suite.path / "replayed.json").read_text()) == [False, False]
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    suite.runpytest().assert_outcomes(passed=1)
    assert json.loads((suite.path / "replayed.json").read_text()) == [True, True]
