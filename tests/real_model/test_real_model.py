"""The whole flow on a real model: llama.cpp's llama-server serving Gemma 3 270M.

Each test writes an inner suite that uses the plugin as a user would (the
``seeded_llm`` fixture, the ``seed``/``llm_params`` markers, the options) and
runs it with pytester against the session's server. The inner tests write what
their calls saw (``Call`` fields) to ``out-<test>.json``; the outer test reads
those files, the snapshots and the terminal output.

Sampling is at temperature 0.8, so the text depends on the seed: equal texts
prove the seed is honoured, not that the model is greedy.
"""

from __future__ import annotations

import json
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llama import LlamaServer

pytestmark = pytest.mark.real_model

#: The build string a snapshot "made on another build" claims.
OLD_BUILD = "b4000-oldbuild"
OLD_OUTPUT = "Once upon a time, the old build told\nanother story entirely."
#: What the inner suites pin (the model name is ignored by llama-server).
MODEL = "gemma3-270m"
PARAMS = f'pytestmark = pytest.mark.llm_params(model="{MODEL}", temperature=0.8, max_tokens=24)\n'

#: The inner suites' conftest: ``dump(llm, texts)`` writes out-<test name>.json.
CONFTEST = """
import json
import pytest

@pytest.fixture
def dump(request):
    def write(llm, texts=()):
        data = {
            "texts": list(texts),
            "outputs": [c.output for c in llm.calls],
            "fingerprints": [c.system_fingerprint for c in llm.calls],
            "chunk_fingerprints": [list(c.chunk_fingerprints) for c in llm.calls],
            "seeds": [c.seed for c in llm.calls],
            "replayed": [c.replayed for c in llm.calls],
            "streams": [c.stream for c in llm.calls],
            "requests": [c.request for c in llm.calls],
            "errors": [c.error for c in llm.calls],
            "usage": [c.usage for c in llm.calls],
        }
        with open(f"out-{request.node.name}.json", "w", encoding="utf-8") as f:
            json.dump(data, f)
    return write
"""

#: Legacy completions suit a base model best: the prompt is simply continued.
STORY = f"""
def story(llm):
    reply = llm.client.completions.create(model="{MODEL}", prompt="Once upon a time")
    return reply.choices[0].text
"""


def inner_module(body: str) -> str:
    return "import pytest\n" + PARAMS + STORY + textwrap.dedent(body)


def out(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    return json.loads((pytester.path / f"out-{name}.json").read_text(encoding="utf-8"))


def snapshot_file(pytester: pytest.Pytester, module: str, test: str) -> Path:
    return pytester.path / "__snapshots__" / module / f"{test}.llm.yaml"


def snapshot_calls(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    calls = data["calls"]
    assert isinstance(calls, list)
    return calls


def all_written_text(root: Path) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


@pytest.fixture(scope="module")
def real_fingerprint(llama_server: LlamaServer) -> str:
    """The server's own ``system_fingerprint``, asked without the plugin or the SDK."""
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1, "seed": 1}
    request = urllib.request.Request(
        f"{llama_server.base_url}/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        fingerprint = json.loads(response.read())["system_fingerprint"]
    assert isinstance(fingerprint, str) and fingerprint, fingerprint
    return fingerprint


@pytest.fixture
def suite(make_suite: Callable[[str], pytest.Pytester], llama_server: LlamaServer) -> pytest.Pytester:
    """A pytester suite pointed at the real server (tests/conftest.py's make_suite), with its conftest."""
    pytester = make_suite(llama_server.base_url)
    pytester.makeconftest(CONFTEST)
    return pytester


@pytest.fixture
def server_back_up(llama_server: LlamaServer) -> Iterator[None]:
    """Make sure the session's server runs again after a test that stopped it."""
    yield
    llama_server.start()  # no-op when it is running


def report(record_property: Callable[[str, object], None], name: str, value: object) -> None:
    record_property(name, value)
    print(f"real_model: {name} = {value}")


SAME_SEED = """
@pytest.mark.seed(7)
def test_story_three_times(seeded_llm, dump):
    texts = [story(seeded_llm) for _ in range(3)]
    dump(seeded_llm, texts)

@pytest.mark.seed(7)
def test_chat_twice(seeded_llm, dump):
    texts = [seeded_llm.complete("Write one sentence about the sea.") for _ in range(2)]
    dump(seeded_llm, texts)
"""


def test_same_seed_same_output_in_a_test_and_across_a_restart(
    suite: pytest.Pytester,
    llama_server: LlamaServer,
    real_fingerprint: str,
    record_property: Callable[[str, object], None],
) -> None:
    suite.makepyfile(test_same=inner_module(SAME_SEED))
    first = suite.runpytest("--seedrepro-mode=live", "--snapshot-update")
    first.assert_outcomes(passed=2)
    story1, chat1 = out(suite, "test_story_three_times"), out(suite, "test_chat_twice")
    for data in (story1, chat1):
        assert data["seeds"] == [7] * len(data["texts"])
        assert data["replayed"] == [False] * len(data["texts"]), "live mode must call the server"
        assert data["outputs"] == data["texts"], "Call.output is what the SDK returned"
        assert data["fingerprints"] == [real_fingerprint] * len(data["texts"])
        assert data["requests"][0]["temperature"] == 0.8 and data["requests"][0]["max_tokens"] == 24
        assert all(text.strip() for text in data["texts"]), data["texts"]
    assert len(set(story1["texts"])) == 1, story1["texts"]
    assert len(set(chat1["texts"])) == 1, chat1["texts"]
    first.stdout.fnmatch_lines(
        [
            "*- seedrepro -*",
            "2 test(s) with seeded_llm: 0 call(s) replayed, 5 live;*",
            f"fingerprints seen (tests): {real_fingerprint} (2)",
        ]
    )

    llama_server.restart()  # a fresh process: no state carried over
    # No --snapshot-update: the plugin's own verdict compares with the first run's snapshots.
    second = suite.runpytest("--seedrepro-mode=live")
    second.assert_outcomes(passed=2)
    story2, chat2 = out(suite, "test_story_three_times"), out(suite, "test_chat_twice")
    assert story2["texts"] == story1["texts"]
    assert chat2["texts"] == chat1["texts"]
    assert story2["replayed"] == [False] * 3
    identical = sum(t == story1["texts"][0] for t in story1["texts"] + story2["texts"])
    identical += sum(t == chat1["texts"][0] for t in chat1["texts"] + chat2["texts"])
    report(record_property, "same_seed_identical", f"{identical}/10")


DIFFERENT_SEEDS = """
SEEDS = [1, 2, 3, 4, 5, 6]

@pytest.mark.parametrize("n", [pytest.param(s, marks=pytest.mark.seed(s)) for s in SEEDS])
def test_story(seeded_llm, dump, n):
    assert seeded_llm.seed == n
    dump(seeded_llm, [story(seeded_llm)])
"""


def test_different_seeds_give_different_outputs(
    suite: pytest.Pytester, record_property: Callable[[str, object], None]
) -> None:
    suite.makepyfile(test_seeds=inner_module(DIFFERENT_SEEDS))
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=6)
    texts = {}
    for seed in range(1, 7):
        data = out(suite, f"test_story[{seed}]")
        assert data["seeds"] == [seed]
        texts[seed] = data["texts"][0]
    distinct = len(set(texts.values()))
    report(record_property, "different_seeds_distinct", f"{distinct}/{len(texts)}")
    assert distinct >= 5, texts


RECORD_REPLAY = """
@pytest.mark.seed(21)
def test_story(seeded_llm, dump):
    dump(seeded_llm, [story(seeded_llm)])

@pytest.mark.seed(22)
def test_chat_stream(seeded_llm, dump):
    dump(seeded_llm, [seeded_llm.complete("Write one sentence about the sea.", stream=True)])
"""


def test_record_then_replay_with_the_server_stopped_and_no_key(
    suite: pytest.Pytester,
    llama_server: LlamaServer,
    server_back_up: None,
    real_fingerprint: str,
    monkeypatch: pytest.MonkeyPatch,
    sentinel_key: str,
) -> None:
    suite.makepyfile(test_rr=inner_module(RECORD_REPLAY))
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    recorded = {name: out(suite, name) for name in ("test_story", "test_chat_stream")}
    for data in recorded.values():
        assert data["replayed"] == [False]
        assert data["fingerprints"] == [real_fingerprint]
    cassettes = sorted(p.name for p in (suite.path / "cassettes" / "test_rr").glob("*.yaml"))
    assert cassettes == ["test_chat_stream.yaml", "test_story.yaml"]
    assert sentinel_key not in all_written_text(suite.path)

    llama_server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    result = suite.runpytest()  # replay is the default mode
    result.assert_outcomes(passed=2)
    for name, before in recorded.items():
        after = out(suite, name)
        assert after["texts"] == before["texts"], name
        assert after["outputs"] == before["outputs"], name
        assert after["replayed"] == [True], name
        assert after["fingerprints"] == [real_fingerprint], name
    assert recorded["test_chat_stream"]["streams"] == [True]
    result.stdout.fnmatch_lines(["2 test(s) with seeded_llm: 2 call(s) replayed, 0 live;*"])
    assert not llama_server.running  # nothing restarted it behind the test's back


FINGERPRINT = """
@pytest.mark.seed(31)
def test_story(seeded_llm, dump):
    dump(seeded_llm, [story(seeded_llm)])
"""


# pytester runs the inner suite in this process, where the warning filters in
# force (the project's filterwarnings = error) would turn the inner run's
# warning into an error; a fresh process of a user's would show it as a warning.
@pytest.mark.filterwarnings("default::pytest_seedrepro.warnings.SeedReproFingerprintWarning")
def test_snapshot_from_another_build(
    suite: pytest.Pytester, real_fingerprint: str, record_property: Callable[[str, object], None]
) -> None:
    suite.makepyfile(test_fp=inner_module(FINGERPRINT))
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)
    real_output = out(suite, "test_story")["texts"][0]
    path = snapshot_file(suite, "test_fp", "test_story")
    (made,) = snapshot_calls(path)
    assert made["system_fingerprint"] == real_fingerprint
    assert made["output"] == real_output
    assert made["request"]["seed"] == 31

    # Pretend an older build made the snapshot, and answered differently.
    assert real_output != OLD_OUTPUT
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["calls"][0]["system_fingerprint"] = OLD_BUILD
    data["calls"][0]["output"] = OLD_OUTPUT
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    old_bytes = path.read_bytes()
    refresh = "pytest --seedrepro-mode=live --snapshot-update 'test_fp.py::test_story'"

    skipped = suite.runpytest("--seedrepro-mode=live", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(
        [
            "*- seedrepro -*",
            f"  skipped: test_fp.py::test_story: {OLD_BUILD} -> {real_fingerprint}",
            "*short test summary info*",
            # fnmatch: [[]1[]] is a literal "[1]".
            f"SKIPPED [[]1[]] test_fp.py:*: seedrepro: test_fp.py::test_story: the backend changed and the "
            f"output with it (call 0 (seed 31): system_fingerprint {OLD_BUILD} -> {real_fingerprint}). "
            f"Refresh with: {refresh}",
        ]
    )
    assert out(suite, "test_story")["texts"] == [real_output], "the body ran to its end before the skip"
    assert path.read_bytes() == old_bytes, "a skipped test's snapshot must stay as it was"
    assert not (suite.path / "cassettes").exists(), "live mode writes no recording"

    warned = suite.runpytest("--seedrepro-mode=live", "--seedrepro-on-fingerprint-change=warn")
    warned.assert_outcomes(passed=1, warnings=1)
    warned.stdout.fnmatch_lines(
        [
            f"*SeedReproFingerprintWarning: seedrepro: test_fp.py::test_story: the backend changed*"
            f"seed 31*{OLD_BUILD} -> {real_fingerprint}*Refresh with: {refresh}",
            f"  warned: test_fp.py::test_story: {OLD_BUILD} -> {real_fingerprint}",
        ]
    )
    assert path.read_bytes() == old_bytes, "a warning never rewrites the snapshot"

    failed = suite.runpytest("--seedrepro-mode=live", "--seedrepro-on-fingerprint-change=fail")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(
        [f"*seedrepro: test_fp.py::test_story: the backend changed*{OLD_BUILD} -> {real_fingerprint}*"]
    )
    assert path.read_bytes() == old_bytes, "a failure never rewrites the snapshot"

    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=1)
    (refreshed,) = snapshot_calls(path)
    assert refreshed["system_fingerprint"] == real_fingerprint
    assert refreshed["output"] == real_output

    suite.runpytest("--seedrepro-mode=live").assert_outcomes(passed=1)
    report(record_property, "fingerprint", real_fingerprint)


STREAMING = """
@pytest.mark.seed(41)
def test_streamed(seeded_llm, dump):
    text = seeded_llm.complete(
        "Write one sentence about the sea.", stream=True, stream_options={"include_usage": True}
    )
    dump(seeded_llm, [text])

@pytest.mark.seed(41)
def test_plain(seeded_llm, dump):
    dump(seeded_llm, [seeded_llm.complete("Write one sentence about the sea.")])
"""


def test_stream_is_snapshotted_as_the_joined_text_with_the_fingerprint(
    suite: pytest.Pytester, real_fingerprint: str
) -> None:
    suite.makepyfile(test_stream=inner_module(STREAMING))
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=2)
    streamed, plain = out(suite, "test_streamed"), out(suite, "test_plain")
    assert streamed["streams"] == [True] and plain["streams"] == [False]
    assert streamed["texts"][0].strip(), streamed
    assert streamed["texts"] == plain["texts"], "same seed: the stream joins to the non-streamed text"
    assert streamed["outputs"] == streamed["texts"]
    assert streamed["fingerprints"] == [real_fingerprint]
    assert streamed["chunk_fingerprints"] == [[real_fingerprint]]
    # The usage chunk (stream_options) is read too: the same text costs the same tokens.
    assert streamed["usage"][0]["total_tokens"] == plain["usage"][0]["total_tokens"] > 0

    (stored,) = snapshot_calls(snapshot_file(suite, "test_stream", "test_streamed"))
    assert stored["output"] == plain["texts"][0]
    assert stored["system_fingerprint"] == real_fingerprint
    assert stored["request"]["seed"] == 41
    assert "stream" not in stored["request"] and "stream_options" not in stored["request"]
    (stored_plain,) = snapshot_calls(snapshot_file(suite, "test_stream", "test_plain"))
    assert stored_plain["request"] == stored["request"]


RERECORD = """
@pytest.mark.seed(51)
def test_story(seeded_llm, dump):
    dump(seeded_llm, [story(seeded_llm)])
"""


def without_timings(cassette: str) -> list[Any]:
    """A cassette's response bodies with llama-server's wall-clock ``timings`` dropped."""
    bodies = []
    for interaction in yaml.safe_load(cassette)["interactions"]:
        body = json.loads(interaction["response"]["body"]["string"])
        body.pop("timings", None)
        bodies.append(body)
    return bodies


def test_rerecording_the_same_answers_leaves_the_recording_unchanged(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_rec=inner_module(RERECORD))
    suite.runpytest("--seedrepro-mode=rerecord", "--snapshot-update").assert_outcomes(passed=1)
    cassette = suite.path / "cassettes" / "test_rec" / "test_story.yaml"
    first_text, first = cassette.read_text(encoding="utf-8"), out(suite, "test_story")
    suite.runpytest("--seedrepro-mode=rerecord").assert_outcomes(passed=1)
    second_text, second = cassette.read_text(encoding="utf-8"), out(suite, "test_story")
    assert second["texts"] == first["texts"] and second["replayed"] == [False]
    assert without_timings(second_text) == without_timings(first_text), "only the timings differ"
    assert second_text == first_text, "re-recording the same answers must not change the recording"


REPEAT = """
@pytest.mark.seed(11)
@pytest.mark.min_identical(1.0)
def test_story_repeated(seeded_llm, dump):
    dump(seeded_llm, [story(seeded_llm)])
"""

#: The probe of the probe: a different seed on every send must show different answers.
PROBE = """
import itertools

SEEDS = itertools.count(1)

def pytest_seedrepro_request(body, item):
    body["seed"] = next(SEEDS)
"""


def test_repeat_mode_finds_the_real_model_reproducible_under_a_pinned_seed(
    suite: pytest.Pytester, record_property: Callable[[str, object], None]
) -> None:
    n = 5
    suite.makepyfile(test_repeated_story=inner_module(REPEAT))
    result = suite.runpytest("--seedrepro-mode=live", f"--seedrepro-repeat={n}", "--seedrepro-report=r.json")
    result.assert_outcomes(passed=1)
    (pinned,) = json.loads((suite.path / "r.json").read_text())["repeat"]
    report(
        record_property,
        "repeat_pinned_seed",
        f"identical {pinned['identical']}/{n}, distinct {pinned['distinct']}",
    )
    assert (pinned["n"], pinned["identical"], pinned["distinct"]) == (n, n, 1)
    assert not (suite.path / "__snapshots__").exists() and not (suite.path / "cassettes").exists()

    # Different seeds per send (a hook in the inner suite): the probe must see distinct outputs.
    suite.makeconftest(CONFTEST + PROBE)
    suite.makepyfile(
        test_repeated_story=inner_module(REPEAT.replace("@pytest.mark.min_identical(1.0)\n", ""))
    )
    result = suite.runpytest("--seedrepro-mode=live", f"--seedrepro-repeat={n}", "--seedrepro-report=r.json")
    result.assert_outcomes(passed=1)
    (varied,) = json.loads((suite.path / "r.json").read_text())["repeat"]
    report(
        record_property,
        "repeat_varied_seeds",
        f"identical {varied['identical']}/{n}, distinct {varied['distinct']}, similarity {varied['similarity']}",
    )
    assert varied["distinct"] >= n - 1 and varied["identical"] < n


DRAWS = """
import json

@pytest.mark.seed(41)
@pytest.mark.draws(3, min_pass=0.5)
def test_story(seeded_llm):
    text = story(seeded_llm)
    with open(f"draw-{seeded_llm.draw}.json", "w", encoding="utf-8") as f:
        json.dump({"text": text, "seeds": [c.seed for c in seeded_llm.draw_calls]}, f)
    assert seeded_llm.draw != 1, "draw 1 is the failing one"
"""


def test_draws_give_distinct_seeded_outputs_and_replay_offline_with_the_same_figures(
    suite: pytest.Pytester,
    llama_server: LlamaServer,
    server_back_up: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suite.makepyfile(test_gemma_draws=inner_module(DRAWS))

    def draws() -> list[dict[str, Any]]:
        return [json.loads((suite.path / f"draw-{k}.json").read_text(encoding="utf-8")) for k in range(3)]

    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_gemma_draws.py::test_story PASSED (2/3 draws)*"])
    recorded = draws()
    seeds = [d["seeds"][0] for d in recorded]
    assert len(set(seeds)) == 3, seeds  # each draw its own seed
    assert len({d["text"] for d in recorded}) == 3, recorded  # and the real model answers each differently

    llama_server.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    for path in suite.path.glob("draw-*.json"):
        path.unlink()
    result = suite.runpytest("-v")  # replay, offline, no key
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_gemma_draws.py::test_story PASSED (2/3 draws)*"])
    assert draws() == recorded
