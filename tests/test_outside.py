"""Calls outside the test's body: fixtures of any scope, threads that outlive their test, cancelled streams.

Each runs the real plugin in a real pytest run against the project's test
server; what the server saw (``llm_server.requests``) shows what reached it.
"""

from __future__ import annotations

import pytest
import yaml

from llmserver import LLMServer
from written import files_of

CONFTEST = """
import openai
import pytest

BASE_URL = "{base_url}"

@pytest.fixture(scope="session")
def warm():
    with openai.OpenAI(base_url=BASE_URL) as client:
        answer = client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "warm up"}}])
    return answer.choices[0].message.content
"""

FIXTURE_TESTS = """
import openai
import pytest
from conftest import BASE_URL

@pytest.fixture(scope="module")
def index():
    with openai.OpenAI(base_url=BASE_URL) as client:
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "index"}])
    return answer.choices[0].message.content

def test_first(warm, index, seeded_llm):
    assert warm and index
    assert seeded_llm.complete("first")
    assert len(seeded_llm.calls) == 1  # the fixtures' calls are theirs, not the test's

def test_second(warm, index, seeded_llm):
    assert warm and index
    assert seeded_llm.complete("second")
"""


def _prompts(server: LLMServer) -> list[str]:
    return [request.body["messages"][-1]["content"] for request in server.requests if request.body]


def test_session_and_module_fixtures_are_pinned_recorded_and_replayed_whichever_test_sets_them_up(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(CONFTEST.format(base_url=llm_server.base_url))
    suite.makepyfile(test_it=FIXTURE_TESTS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    assert sorted(_prompts(llm_server)) == ["first", "index", "second", "warm up"]
    assert all("seed" in request.body for request in llm_server.requests if request.body)
    recorded = files_of(suite.path)
    assert "cassettes/conftest/fixture-warm.yaml" in recorded
    assert "cassettes/test_it/fixture-index.yaml" in recorded
    for args in (["-k", "second"], ["-n", "2"], []):
        llm_server.requests.clear()
        suite.runpytest(*args).assert_outcomes(passed=1 if args and args[0] == "-k" else 2)
        assert llm_server.requests == [], args
        assert files_of(suite.path) == recorded


def test_a_fixture_without_its_recording_fails_the_set_up_in_one_line(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(CONFTEST.format(base_url=llm_server.base_url))
    suite.makepyfile(test_it=FIXTURE_TESTS)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    (suite.path / "cassettes" / "conftest" / "fixture-warm.yaml").unlink()
    before = files_of(suite.path)
    llm_server.requests.clear()
    result = suite.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*seedrepro: fixture 'warm' (set up for test_it.py::test_first): call 0: POST /chat/completions*"
            "has no recording*Record it with: pytest --seedrepro-mode=record 'test_it.py::test_first'"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert llm_server.requests == []
    assert files_of(suite.path) == before


def test_a_function_fixture_before_seeded_llm_belongs_to_the_test(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it=f"""
        import openai
        import pytest

        @pytest.fixture
        def prepared():
            with openai.OpenAI(base_url="{llm_server.base_url}") as client:
                answer = client.chat.completions.create(
                    model="m", messages=[{{"role": "user", "content": "prepare"}}]
                )
            return answer.choices[0].message.content

        def test_it(prepared, seeded_llm):
            assert [call.request["messages"][0]["content"] for call in seeded_llm.calls] == ["prepare"]
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    assert [request.body.get("seed") is not None for request in llm_server.requests] == [True]
    recorded = files_of(suite.path)
    assert "prepare" in recorded["cassettes/test_it/test_it.yaml"].decode()
    llm_server.requests.clear()
    suite.runpytest().assert_outcomes(passed=1)
    assert llm_server.requests == []
    assert files_of(suite.path) == recorded


LATE_THREAD = """
import threading
import openai

GO = threading.Event()
THREADS = []

def test_leaves_a_thread(seeded_llm):
    def later():
        GO.wait(10)
        try:
            openai.OpenAI().chat.completions.create(model="m", messages=[{"role": "user", "content": "late"}])
        except Exception as exc:
            print("the thread got:", exc)
    THREADS.append(threading.Thread(target=later))
    THREADS[0].start()

def test_later_without_the_fixture():
    GO.set()
    THREADS[0].join(10)
"""


@pytest.mark.parametrize(
    "args",
    [["--seedrepro-mode=live", "-s"], ["-s"], ["--seedrepro-mode=live", "-n", "2", "--dist", "loadfile"]],
    ids=["live", "replay", "xdist"],
)
def test_a_thread_calling_after_its_test_ended_fails_in_one_line_and_reaches_no_server(
    suite: pytest.Pytester, llm_server: LLMServer, args: list[str]
) -> None:
    suite.makepyfile(test_it=LATE_THREAD)
    result = suite.runpytest(*args)
    line = (
        "seedrepro: a thread started by test_it.py::test_leaves_a_thread called POST /chat/completions "
        "after the test ended"
    )
    if "-s" in args:  # what the thread's call raised (an xdist worker's output is not shown)
        result.stdout.fnmatch_lines([f"*the thread got: {line}: nothing was sent*"])
    result.stdout.fnmatch_lines([line])  # the run's summary
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert llm_server.requests == []


LATE_THREAD_DURING_ANOTHER_TEST = """
import threading
import openai

GO = threading.Event()
THREADS = []

def test_leaves_a_thread(seeded_llm):
    def later():
        GO.wait(10)
        try:
            openai.OpenAI().chat.completions.create(model="m", messages=[{"role": "user", "content": "a late call"}])
        except Exception as exc:
            print("the thread got:", exc)
    THREADS.append(threading.Thread(target=later))
    THREADS[0].start()

def test_later_with_the_fixture(seeded_llm):
    GO.set()
    THREADS[0].join(10)
    assert seeded_llm.complete("mine")
"""


@pytest.mark.parametrize("mode", ["record", "live"])
def test_a_thread_calling_while_another_seeded_test_runs_is_refused_not_given_to_that_test(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str
) -> None:
    suite.makepyfile(test_it=LATE_THREAD_DURING_ANOTHER_TEST)
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update", "-s")
    line = (
        "seedrepro: a thread started by test_it.py::test_leaves_a_thread called POST /chat/completions "
        "after the test ended"
    )
    result.stdout.fnmatch_lines([f"*the thread got: {line}: nothing was sent*"])
    result.stdout.fnmatch_lines([line])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # Only the later test's own call reached the server, and only it is in its files.
    assert [(r.body or {})["messages"][0]["content"] for r in llm_server.requests] == ["mine"]
    assert all(b"a late call" not in data for data in files_of(suite.path).values())


def test_a_pool_thread_reused_by_a_later_seeded_test_is_not_blamed(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        from concurrent.futures import ThreadPoolExecutor

        POOL = ThreadPoolExecutor(max_workers=1)

        def test_a(seeded_llm):
            assert POOL.submit(seeded_llm.complete, "a").result()

        def test_b(seeded_llm):
            assert POOL.submit(seeded_llm.complete, "b").result()
            POOL.shutdown()
        """
    )
    result = suite.runpytest("--seedrepro-mode=live", "--snapshot-update")
    result.assert_outcomes(passed=2)
    assert "after the test ended" not in result.stdout.str()


CANCELLED = """
import asyncio
import pytest

@pytest.mark.asyncio
async def test_gives_up(seeded_llm):
    async def read():
        parts = []
        stream = await seeded_llm.async_client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "slow"}], stream=True
        )
        async for chunk in stream:
            parts.append(chunk)
        return parts
    try:
        await asyncio.wait_for(read(), timeout=0.3)
    except TimeoutError:
        pass
"""


@pytest.mark.parametrize("mode", ["live", "record", "rerecord"])
def test_a_cancelled_async_stream_is_unfinished_never_stored(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str
) -> None:
    suite.makepyfile(test_it=CANCELLED)
    llm_server.stall_next_stream(after_chunks=2, seconds=30)
    result = suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update", "-W", "error")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*seedrepro: test_it.py::test_gives_up: call 0: *cancelled*"])
    assert "Unraisable" not in result.stdout.str()
    assert files_of(suite.path) == {}


def test_a_consumer_that_stops_reading_early_is_no_error_and_the_whole_answer_is_kept(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    # vcrpy takes in the whole body before the client sees its first chunk (in
    # every mode: live captures the exchange too), so the answer kept is the
    # whole one the server sent: the same as a consumer that read it all.
    suite.makepyfile(
        test_it="""
        import pytest

        async def ask(seeded_llm):
            return await seeded_llm.async_client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )

        @pytest.mark.asyncio
        async def test_first_chunk_only(seeded_llm):
            stream = await ask(seeded_llm)
            async for chunk in stream:
                break
            await stream.close()

        @pytest.mark.asyncio
        async def test_all_of_it(seeded_llm):
            async for chunk in await ask(seeded_llm):
                pass
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=2)
    snapshots = suite.path / "__snapshots__" / "test_it"

    def output_of(name: str) -> str:
        return yaml.safe_load((snapshots / f"{name}.llm.yaml").read_text())["calls"][0]["output"]

    assert output_of("test_all_of_it").count(" ") > 3  # a whole answer of several words
    assert output_of("test_first_chunk_only") == output_of("test_all_of_it")
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=2)  # and it replays


def test_the_fixtures_async_client_is_closed_after_the_test(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        CLIENTS = []

        @pytest.mark.asyncio
        async def test_a(seeded_llm):
            assert await seeded_llm.acomplete("hello")
            CLIENTS.append(seeded_llm.async_client)

        def test_b():
            assert CLIENTS[0].is_closed()
        """
    )
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update").assert_outcomes(passed=2)


def test_the_async_client_is_closed_when_the_test_never_used_it_on_a_loop(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="""
        CLIENTS = []

        def test_a(seeded_llm):
            CLIENTS.append(seeded_llm.async_client)

        def test_b():
            assert CLIENTS[0].is_closed()
        """
    )
    suite.runpytest("--seedrepro-mode=live", "--snapshot-update", "-W", "error").assert_outcomes(passed=2)


def test_a_fixture_that_swallows_an_api_error_fails_the_set_up_and_writes_no_recording(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(
        f"""
        import openai
        import pytest

        @pytest.fixture(scope="session")
        def warm():
            try:
                with openai.OpenAI(base_url="{llm_server.base_url}", max_retries=0) as client:
                    client.chat.completions.create(model="m", messages=[{{"role": "user", "content": "warm up"}}])
            except openai.APIError:
                return "cold"  # the app carries on: the plugin must not
            return "warm"
        """
    )
    suite.makepyfile(
        test_it="""
        def test_first(warm, seeded_llm):
            assert seeded_llm.complete("first")

        def test_second(warm, seeded_llm):
            assert seeded_llm.complete("second")
        """
    )
    llm_server.fail_next(500)
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(errors=2)  # the second test sees the same failed set-up
    result.stdout.fnmatch_lines(
        ["seedrepro: fixture 'warm' (set up for test_it.py::test_first): call 0: InternalServerError*"] * 2
    )
    assert "Traceback" not in result.stdout.str()
    assert files_of(suite.path) == {}


def test_a_module_fixture_of_a_conftest_gets_a_recording_per_module(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makeconftest(
        f"""
        import openai
        import pytest

        @pytest.fixture(scope="module", params=["small", "large"])
        def index(request):
            with openai.OpenAI(base_url="{llm_server.base_url}") as client:
                prompt = f"index {{request.module.__name__}} {{request.param}}"
                answer = client.chat.completions.create(model="m", messages=[{{"role": "user", "content": prompt}}])
            return answer.choices[0].message.content
        """
    )
    test = "def test_it(index, seeded_llm):\n    assert index and seeded_llm.complete('q')\n"
    suite.makepyfile(test_one=test, test_two=test)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=4)
    recorded = files_of(suite.path)
    assert sorted(name for name in recorded if "fixture-" in name) == sorted(
        f"cassettes/conftest/fixture-index[{param}].test_{module}.py.yaml"
        for module in ("one", "two")
        for param in ("small", "large")
    )
    llm_server.requests.clear()
    for module in ("test_two.py", "test_one.py"):
        suite.runpytest(module).assert_outcomes(passed=2)
    assert llm_server.requests == []
    assert files_of(suite.path) == recorded


def test_an_async_module_fixture_is_recorded_and_replayed(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it=f"""
        import openai
        import pytest
        import pytest_asyncio

        @pytest_asyncio.fixture(scope="module", loop_scope="module")
        async def index():
            async with openai.AsyncOpenAI(base_url="{llm_server.base_url}") as client:
                answer = await client.chat.completions.create(
                    model="m", messages=[{{"role": "user", "content": "index"}}]
                )
            return answer.choices[0].message.content

        @pytest.mark.asyncio(loop_scope="module")
        async def test_it(index, seeded_llm):
            assert index and await seeded_llm.acomplete("q")
        """
    )
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    recorded = files_of(suite.path)
    assert "cassettes/test_it/fixture-index.yaml" in recorded
    llm_server.requests.clear()
    suite.runpytest().assert_outcomes(passed=1)
    assert llm_server.requests == []
    assert files_of(suite.path) == recorded


def test_a_function_fixture_set_up_after_seeded_llm_may_still_set_the_api_key(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    suite.makepyfile(
        test_it="""
        import os
        import pytest

        @pytest.fixture(autouse=True)
        def key(monkeypatch):
            if os.environ.get("WITH_KEY"):
                monkeypatch.setenv("OPENAI_API_KEY", "sk-set-by-a-fixture")

        def test_it(seeded_llm):
            assert seeded_llm.complete("q")
        """
    )
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["seedrepro: test_it.py::test_it: --seedrepro-mode=record calls the API and needs*"]
    )
    assert files_of(suite.path) == {}
    monkeypatch.setenv("WITH_KEY", "1")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
