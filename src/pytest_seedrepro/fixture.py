"""The ``seeded_llm`` fixture's object and the set-up/tear-down around each test."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from pytest_seedrepro import draws, markers
from pytest_seedrepro.calls import Call, is_pinnable, is_recorded_error, is_responses
from pytest_seedrepro.options import record_command
from pytest_seedrepro.pinning import pin_body, pin_responses_body
from pytest_seedrepro.session import DRAWS_RUN, RUN_STATE, TEST_STATE, RunState, TestState, http_module
from pytest_seedrepro.warnings import SeedReproWarning

if TYPE_CHECKING:
    import openai

#: Used when no OPENAI_API_KEY is set. The SDK refuses to build a client
#: without a key, even when every answer comes from a recording. Never stored:
#: recordings keep no Authorization header.
PLACEHOLDER_API_KEY = "sk-seedrepro-placeholder-not-a-real-key"

Prompt = str | Sequence[dict[str, Any]]

#: The environment variables set to ``--seedrepro-base-url`` while a test runs.
BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE")


class BrokenAnswer(Exception):
    """``complete()`` got an answer that is not a chat completion; the message names the call."""


class SeededLLM:
    """What a test gets from ``seeded_llm``: pinned clients, a shortcut, and the calls made."""

    def __init__(
        self, run: RunState, state: TestState, api_key: str, nodeid: str = "", running: Any = None
    ) -> None:
        self._run = run
        self._nodeid = nodeid
        self._state = state
        self._given_key = api_key
        self._client: openai.OpenAI | None = None
        self._async_client: openai.AsyncOpenAI | None = None
        #: The effective seed: the ``seed`` marker's, else the default seed; None under
        #: ``seed(None)``, whose requests carry none.
        self.seed: int | None = (
            None
            if state.pins.no_seed
            else state.pins.seed
            if state.pins.seed is not None
            else run.settings.default_seed
        )
        #: ``@pytest.mark.draws``: this draw's number, from 0 (None outside a draws test).
        self.draw: int | None = None
        if running is not None:  # a draws.DrawsRun: each draw its own seed, from the test's
            self.draw = running.draw
            if self.seed is not None:
                self.seed = draws.draw_seed(self.seed, running.n, running.draw)
        #: The pinned request parameters (``llm_params``, merged module > class > function).
        self.params: dict[str, Any] = dict(state.pins.params)
        #: Calls made so far by this test, by any OpenAI client, in issue order (in a draws
        #: test, every draw's so far: :attr:`draw_calls` are this draw's).
        self.calls: list[Call] = state.calls

    @property
    def draw_calls(self) -> list[Call]:
        """The calls this draw made so far (a draws test); every call of the test otherwise."""
        if self.draw is None:
            return list(self.calls)
        # A call is given its draw when its draw ends: the calls still without one are this draw's.
        return [call for call in self.calls if call.draw is None or call.draw == self.draw]

    @property
    def _api_key(self) -> str:
        # Empty when no key was set at the fixture's set-up: a fixture set up after it may set one.
        return self._given_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY

    @property
    def client(self) -> openai.OpenAI:
        """An ``openai.OpenAI`` client; every request it sends is pinned, recorded and snapshotted."""
        if self._client is None:
            import openai

            # A client of its own, so a test that closes it (``with seeded_llm.client
            # as c:``) closes nothing another test needs; the TLS context is shared.
            http_client = openai.DefaultHttpxClient(verify=self._run.ssl_context(openai.DefaultHttpxClient))
            self._state.closers.append(http_client.close)
            self._client = openai.OpenAI(
                api_key=self._api_key, base_url=self._run.settings.base_url, http_client=http_client
            )
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The same as :attr:`client`, as ``openai.AsyncOpenAI``."""
        if self._async_client is None:
            import openai

            # Async connections belong to the event loop that opened them and each
            # test may run on a loop of its own: no idle connection outlives the test.
            http = http_module(openai.DefaultAsyncHttpxClient)
            http_client = openai.DefaultAsyncHttpxClient(
                verify=self._run.ssl_context(openai.DefaultAsyncHttpxClient),
                limits=http.Limits(max_connections=100, max_keepalive_connections=0),
            )
            self._async_client = openai.AsyncOpenAI(
                api_key=self._api_key, base_url=self._run.settings.base_url, http_client=http_client
            )
            self._state.closers.append(functools.partial(close_async_client, self._async_client))
        return self._async_client

    def _chat_args(self, prompt: Prompt, params: dict[str, Any]) -> dict[str, Any]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        model = params.pop("model", None) or self.params.get("model") or self._run.settings.model
        return {"model": model, "messages": messages, **params}

    def complete(self, prompt: Prompt, **params: Any) -> str:
        """One chat completion; ``prompt`` is a user message or a list of messages. Returns the text."""
        args = self._chat_args(prompt, params)
        # The run's own client, which no test can close: the same pinning,
        # recording and snapshots as :attr:`client`, without building one per test.
        base_url = self._run.settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
        client = self._run.shared_client(self._api_key, base_url)
        if args.get("stream"):
            return "".join(
                (chunk.choices[0].delta.content or "") if chunk.choices else ""
                for chunk in client.chat.completions.create(**args)
            )
        return self._text_of(client.chat.completions.create(**args))

    async def acomplete(self, prompt: Prompt, **params: Any) -> str:
        """:meth:`complete` through :attr:`async_client`."""
        args = self._chat_args(prompt, params)
        if args.get("stream"):
            parts = []
            async for chunk in await self.async_client.chat.completions.create(**args):
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
            return "".join(parts)
        return self._text_of(await self.async_client.chat.completions.create(**args))

    def _text_of(self, response: Any) -> str:
        """The answer's text; a 200 that is no completion (an HTML page, an error object) is one line."""
        try:
            return response.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError):
            pass
        causes = [f"call {call.index}: {call.error}" for call in self.calls if call.error]
        cause = causes[-1] if causes else f"the answer is not a chat completion ({type(response).__name__})"
        error = BrokenAnswer(f"seedrepro: {self._nodeid}: complete(): {cause}")
        self._state.raised.add(id(error))  # the report shows the plugin's line, not this frame
        raise error

    def __repr__(self) -> str:
        return f"<SeededLLM seed={self.seed} params={self.params!r} calls={len(self.calls)}>"


#: Paths of the code between the caller and the pinning: the warning points past them.
_INTERNAL_PATHS = tuple(
    f"{os.sep}{name}{os.sep}"
    for name in ("openai", "pytest_seedrepro", "httpx", "httpx2", "asyncio", "anyio")
)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the code that made the API call."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        if not any(part in frame.f_code.co_filename for part in _INTERNAL_PATHS):
            return level
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return 1


def _api_key_or_fail(mode: str, nodeid: str) -> str:
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    if mode == "replay":
        return PLACEHOLDER_API_KEY
    pytest.fail(
        f"seedrepro: {nodeid}: --seedrepro-mode={mode} calls the API and needs OPENAI_API_KEY; set it "
        "(any value for a local server), or replay the recordings with --seedrepro-mode=replay",
        pytrace=False,
    )


def require_api_key(item: pytest.Item) -> None:
    """Once the test's set-up is over: fail it in one line if calling the API needs a key and none was set."""
    state = item.stash.get(TEST_STATE, None)
    if state is not None and state.needs_api_key:
        _api_key_or_fail(item.config.stash[RUN_STATE].settings.mode, item.nodeid)


def _fail(message: str) -> None:
    pytest.fail(message, pytrace=False)


@contextmanager
def seeded_llm_for(request: pytest.FixtureRequest) -> Iterator[SeededLLM]:
    """Pin, observe, record or replay every OpenAI call of one test."""
    item = request.node
    assert isinstance(item, pytest.Item)
    running = item.stash.get(DRAWS_RUN, None)
    if running is None:
        with ExitStack() as stack:
            yield _TestSetup(request, item, None).open(stack)
        return
    # A draws test: the first draw opens what spans them all (calls, cassette,
    # interception); every draw gets a SeededLLM of its own; the last closes it.
    if running.stack is None:
        with ExitStack() as stack:
            llm = _TestSetup(request, item, running).open(stack)
            running.stack = stack.pop_all()
    else:
        llm = running.new_llm()
    try:
        yield llm
    finally:
        if running.last:
            running.close()


class _TestSetup:
    """One ``seeded_llm`` test being set up: the steps that pin, record and route its calls.

    :meth:`open` runs the steps in order; :meth:`prepare_body` and
    :meth:`on_error` are what the interception calls back for each of the
    test's calls. ``running`` is the test's draws (``draws.DrawsRun``), if any.
    """

    def __init__(self, request: pytest.FixtureRequest, item: pytest.Item, running: Any) -> None:
        self.request = request
        self.item = item
        self.running = running
        self.run = request.config.stash[RUN_STATE]
        self.settings = self.run.settings
        self.state = TestState(pins=markers.Pins())
        #: The key the test's clients get; empty when none is set yet (see :meth:`choose_api_key`).
        self.api_key = ""
        self.hook = item.ihook  # a conftest.py's hooks apply to the tests below it only

    def open(self, stack: ExitStack) -> SeededLLM:
        """Open the test's pinning, recording and interception on ``stack``, which the caller closes."""
        started_before = set(threading.enumerate())
        self.item.stash[TEST_STATE] = self.state
        self.take_snapshot()
        self.resolve_pins()
        self.choose_api_key()
        self.load_sdk()
        stack.callback(_close_all, self.state)  # the per-test clients, closed last
        self.set_environment(stack)
        self.open_recording(stack)
        self.start_interception(stack, started_before)
        if self.running is not None:
            self.running.new_llm = self.new_llm
        return self.new_llm()

    def new_llm(self) -> SeededLLM:
        """What the test (or one of its draws) gets from ``seeded_llm``."""
        return SeededLLM(self.run, self.state, self.api_key, self.item.nodeid, self.running)

    def take_snapshot(self) -> None:
        """Take the test's snapshot assertion, first, before anything here can fail.

        With the snapshot in hand, a test that fails from here on keeps it (see writes.finish).
        """
        if self.request.config.pluginmanager.hasplugin("syrupy"):
            import pytest_seedrepro.snapshots as snapshots

            self.state.snapshot = snapshots.assertion_for(self.item, self.request)

    def resolve_pins(self) -> None:
        """The seed and ``llm_params`` the markers pin (a seed matrix's seed first); a bad marker fails."""
        try:
            self.state.pins = markers.resolve(self.item)
        except markers.MarkerError as exc:
            problem = f"seedrepro: {self.item.nodeid}: {exc}"
        else:
            problem = ""
        if problem:
            _fail(problem)  # outside the except block: one line, no exception chain
        # A seed matrix's parameter (plugin.pytest_generate_tests) is the test's seed.
        matrix_seed = getattr(self.request, "param", None)
        if matrix_seed is not None:
            self.state.pins = dataclasses.replace(self.state.pins, seed=matrix_seed)

    def choose_api_key(self) -> None:
        """The key the test's clients use: the environment's, a placeholder to replay, or none yet."""
        self.api_key = os.environ.get("OPENAI_API_KEY") or (
            PLACEHOLDER_API_KEY if self.settings.mode == "replay" else ""
        )
        # seeded_llm is set up before the test's other function fixtures, one of
        # which may set the key: a missing one is reported once the set-up is over.
        self.state.needs_api_key = not self.api_key

    def load_sdk(self) -> None:
        """Import openai and check the internals the plugin patches; one line if they moved."""
        from pytest_seedrepro import sdk

        try:
            sdk.load()
        except sdk.UnsupportedSDK as exc:
            unsupported = str(exc)
        else:
            return
        # Failed outside the except block: inside it, the report would chain the
        # original exception ("During handling of ...") and print the line twice.
        _fail(f"seedrepro: {unsupported}")

    def set_environment(self, stack: ExitStack) -> None:
        """Set the variables the clients the code under test builds read, until ``stack`` closes."""
        env = stack.enter_context(pytest.MonkeyPatch.context())
        if self.api_key:
            env.setenv("OPENAI_API_KEY", self.api_key)
        if self.settings.base_url:
            # OPENAI_BASE_URL for the openai SDK (and langchain, instructor,
            # pydantic-ai, openai-agents through it); OPENAI_API_BASE for the
            # libraries that read the old name (llama-index, older langchain).
            for name in BASE_URL_VARIABLES:
                env.setenv(name, self.settings.base_url)

    def open_recording(self, stack: ExitStack) -> None:
        """Open the test's cassette on ``stack``; a corrupt one, or one of other draws, fails the test.

        A live run records too (every request still reaches the API, nothing is replayed) and never
        writes: what it saw is kept for `seedrepro accept` (review.py). Not under the seed experiment
        (--seedrepro-repeat), which judges nothing and so leaves nothing to accept.
        """
        settings, state, item, running = self.settings, self.state, self.item, self.running
        if settings.mode == "live" and settings.repeat > 1:
            return
        import pytest_seedrepro.intercept as intercept
        import pytest_seedrepro.recording as recording

        state.recording = recording.Recording(
            recording.cassette_path(item.path, item.nodeid, settings.cassette_dir),
            state.calls,
            ignore_existing=settings.mode in ("rerecord", "live"),
            nodeid=item.nodeid,
        )
        try:
            cassette = stack.enter_context(
                recording.open_cassette(
                    state.recording, settings.mode, None if running is None else lambda: running.draw
                )
            )
            recording.watch_replays(cassette, intercept.note_replayed, item.nodeid)
        except recording.CorruptRecording as exc:
            message = (
                f"seedrepro: {item.nodeid}: {exc}. Fix or delete the file, then record it again with: "
                f"pytest --seedrepro-mode=rerecord '{item.nodeid}'"
            )
        else:
            message = ""
            if running is not None and settings.mode == "replay" and cassette.data:
                held = recording.recorded_draws(cassette)
                if held != running.n:
                    message = (
                        f"seedrepro: {item.nodeid}: the recording {state.recording.path} holds {held} "
                        f"draw(s), the draws marker asks for {running.n}; record them with: "
                        f"{record_command(item.nodeid)}"
                    )
        if message:
            _fail(message)  # outside the except block: one line, no exception chain

    def start_interception(self, stack: ExitStack, started_before: set[threading.Thread]) -> None:
        """Route the SDK's traffic to this test until ``stack`` closes; then refuse its threads' calls."""
        import pytest_seedrepro.intercept as intercept

        settings = self.settings
        intercept.install()
        self.run.sdk_patched = True
        active = intercept.ActiveTest(
            self.state.calls,
            self.prepare_body,
            self.on_error,
            retries=settings.mode != "replay",
            repeat=settings.repeat,
            repeat_serial=settings.repeat_serial,
        )
        self.state.settle = active.settle
        intercept.activate(active)
        stack.callback(intercept.activate, None)
        # When the test ends, threads it left running may still call: those calls are refused.
        stack.callback(
            intercept.watch_threads_left, started_before, self.item.nodeid, self.run.late_calls.append
        )

    def _test_seed(self) -> int:
        pins = self.state.pins
        return pins.seed if pins.seed is not None else self.settings.default_seed

    def prepare_body(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Pin a call's body (seed, ``llm_params``) and run the request hook; also: was it pinnable."""
        pins, running = self.state.pins, self.running
        overridden: list[str] = []
        pinnable = is_pinnable(path) or is_responses(path)
        if is_responses(path):
            body, overridden = pin_responses_body(body, params=pins.params)
        elif pinnable:
            marker_seed, default_seed = pins.seed, self.settings.default_seed
            if running is not None:  # each draw its own seed, from the test's
                default_seed = draws.draw_seed(self._test_seed(), running.n, running.draw)
                marker_seed = default_seed if marker_seed is not None else None
            body, overridden = pin_body(
                body,
                marker_seed=marker_seed,
                no_seed=pins.no_seed,
                default_seed=default_seed,
                params=pins.params,
            )
        for key in overridden:
            warnings.warn(
                SeedReproWarning(
                    f"{self.item.nodeid}: a marker pinned {key!r}, overriding the value the call passed"
                ),
                stacklevel=_caller_stacklevel(),
            )
        self.hook.pytest_seedrepro_request(body=body, item=self.item)
        return body, pinnable

    def on_error(self, call: Call, exc: BaseException) -> BaseException | None:
        """A call's error: a recorded answer, a missing recording's line, or the test's problem."""
        state, item = self.state, self.item
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and is_recorded_error(status) and call.error is None:
            # A deterministic answer to a bad request (400, 404, 422): recorded,
            # replayed and snapshotted like any answer; the app handles it.
            call.status = status
            call.output = _error_message(exc)
            return None
        state.raised.add(id(exc))
        if state.recording is not None:
            import pytest_seedrepro.recording as recording

            refusal = recording.missing_recording_error(exc)
            if refusal is not None:
                call.error = recording.describe_missing(call, state.recording.path, refusal, item.nodeid)
                replacement = recording.MissingRecording(
                    f"seedrepro: {item.nodeid}: call {call.index}: {call.error}"
                )
                state.raised.add(id(replacement))
                return replacement
        # An API error (429, 5xx, timeout, connection) or a broken answer: the
        # test fails with the cause, and nothing of this test is written.
        call.error = call.error or _not_json(call.request, exc) or _describe_error(exc)
        return None


def _describe_error(exc: BaseException) -> str:
    """``Type: message``, with the root cause when the SDK wrapped one ("Connection error.")."""
    text = f"{type(exc).__name__}: {exc}"
    root, depth = exc, 0
    while root.__cause__ is not None and depth < 10:
        root, depth = root.__cause__, depth + 1
    if root is not exc and str(root) not in text:
        text += f" ({type(root).__name__}: {root})"
    return text


def _not_json(body: Any, exc: BaseException) -> str | None:
    """For a body the SDK could not serialise, the first value that is not JSON, by its path."""
    if not isinstance(exc, TypeError) or "JSON serializable" not in str(exc):
        return None

    def leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield from leaves(inner, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list | tuple):
            for index, inner in enumerate(value):
                yield from leaves(inner, f"{path}[{index}]")
        elif not isinstance(value, str | int | float | bool | type(None)):
            yield path, value

    for path, value in leaves(body, ""):
        if type(value).__name__ in str(exc):  # "Object of type Decimal is not JSON serializable"
            return (
                f"the request body is not JSON: {path} is {value!r} ({type(value).__name__}); "
                "pass a JSON value (str, number, bool, None, list, dict)"
            )
    return None


def _error_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message") is not None:
            return str(error["message"])
    return str(getattr(exc, "message", exc))


#: Closes scheduled on a loop that was running at tear-down; kept so they are not collected unfinished.
#: A module global on purpose, not the run's state: asyncio keeps only weak references to tasks, and
#: a task may finish after its run ended (when its loop next runs); each one leaves the set when done,
#: so nothing of one run stays for the next.
_closing: set[asyncio.Task[None]] = set()


def close_async_client(client: openai.AsyncOpenAI) -> None:
    """Close ``client`` from the fixture's synchronous tear-down, whatever became of the test's loop.

    Its pool keeps no idle connection (keep-alive 0), so closing it needs no
    loop of the test's: a fresh one does, without touching the thread's current
    loop. When a loop runs in this thread (tear-down called from async code), the
    close is scheduled on it instead, as no second loop may run in a thread.
    """
    if client.is_closed():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        task = loop.create_task(client.close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
        return
    fresh = asyncio.new_event_loop()
    try:
        fresh.run_until_complete(client.close())
    finally:
        fresh.close()


def _close_all(state: TestState) -> None:
    for close in state.closers:
        try:
            close()
        except Exception:  # a client the test already closed, or broke: nothing to release
            pass
    state.closers.clear()
