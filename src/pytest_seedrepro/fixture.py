"""The ``seeded_llm`` fixture's object and the set-up/tear-down around each test."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pytest_seedrepro.intercept as intercept
from pytest_seedrepro import markers
from pytest_seedrepro.calls import Call, is_pinnable
from pytest_seedrepro.pinning import pin_body
from pytest_seedrepro.session import RUN_STATE, RunState
from pytest_seedrepro.warnings import SeedReproWarning

if TYPE_CHECKING:
    import openai

    from pytest_seedrepro.recording import AtomicPersister

#: Used when no OPENAI_API_KEY is set. The SDK refuses to build a client
#: without a key, even when every answer comes from a recording. Never stored:
#: recordings keep no Authorization header.
PLACEHOLDER_API_KEY = "sk-seedrepro-placeholder-not-a-real-key"

Prompt = str | Sequence[dict[str, Any]]


@dataclass
class TestState:
    """What the plugin knows about one ``seeded_llm`` test, kept in ``item.stash``."""

    calls: list[Call]
    pins: markers.Pins
    #: One message per problem that must fail the test even if the code under
    #: test swallowed the exception (a missing recording, an API error).
    problems: list[str] = field(default_factory=list)
    cassette: Path | None = None
    persister: AtomicPersister | None = None
    #: Set by the verdict: the test is skipped for a fingerprint change, so its
    #: files must stay as they were.
    keep_files_as_they_were: bool = False
    #: syrupy's ``SnapshotAssertion`` with seedrepro's extension (None without syrupy's plugin).
    snapshot: Any = None
    #: Calls whose fingerprint differs from the snapshot's (``verdict.FingerprintChange``).
    fingerprint_changes: list[Any] = field(default_factory=list)


TEST_STATE = pytest.StashKey[TestState]()


class SeededLLM:
    """What a test gets from ``seeded_llm``: pinned clients, a shortcut, and the calls made."""

    def __init__(self, run: RunState, state: TestState, api_key: str) -> None:
        self._run = run
        self._api_key = api_key
        self._client: openai.OpenAI | None = None
        self._async_client: openai.AsyncOpenAI | None = None
        #: The effective seed: the ``seed`` marker's, else the default seed.
        self.seed: int = state.pins.seed if state.pins.seed is not None else run.settings.default_seed
        #: The pinned request parameters (``llm_params``, merged module > class > function).
        self.params: dict[str, Any] = dict(state.pins.params)
        #: Calls made so far by this test, by any OpenAI client, in issue order.
        self.calls: list[Call] = state.calls

    @property
    def client(self) -> openai.OpenAI:
        """An ``openai.OpenAI`` client; every request it sends is pinned, recorded and snapshotted."""
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self._api_key,
                base_url=self._run.settings.base_url,
                http_client=self._run.sync_http_client(),
            )
        return self._client

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        """The same as :attr:`client`, as ``openai.AsyncOpenAI``."""
        if self._async_client is None:
            import openai

            self._async_client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._run.settings.base_url,
                http_client=self._run.async_http_client(),
            )
        return self._async_client

    def _chat_args(self, prompt: Prompt, params: dict[str, Any]) -> dict[str, Any]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        model = params.pop("model", None) or self.params.get("model") or self._run.settings.model
        return {"model": model, "messages": messages, **params}

    def complete(self, prompt: Prompt, **params: Any) -> str:
        """One chat completion; ``prompt`` is a user message or a list of messages. Returns the text."""
        args = self._chat_args(prompt, params)
        if args.get("stream"):
            return "".join(
                (chunk.choices[0].delta.content or "") if chunk.choices else ""
                for chunk in self.client.chat.completions.create(**args)
            )
        response = self.client.chat.completions.create(**args)
        return response.choices[0].message.content or ""

    async def acomplete(self, prompt: Prompt, **params: Any) -> str:
        """:meth:`complete` through :attr:`async_client`."""
        args = self._chat_args(prompt, params)
        if args.get("stream"):
            parts = []
            async for chunk in await self.async_client.chat.completions.create(**args):
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
            return "".join(parts)
        response = await self.async_client.chat.completions.create(**args)
        return response.choices[0].message.content or ""

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


@contextmanager
def seeded_llm_for(request: pytest.FixtureRequest) -> Iterator[SeededLLM]:
    """Pin, observe, record or replay every OpenAI call of one test."""
    item = request.node
    assert isinstance(item, pytest.Item)
    run = request.config.stash[RUN_STATE]
    settings = run.settings
    api_key = _api_key_or_fail(settings.mode, item.nodeid)
    state = TestState(calls=[], pins=markers.resolve(item))  # markers were validated at collection
    item.stash[TEST_STATE] = state
    hook = request.config.hook
    if request.config.pluginmanager.hasplugin("syrupy"):
        import pytest_seedrepro.snapshots as snapshots

        state.snapshot = request.getfixturevalue("snapshot").use_extension(snapshots.LLMCallsExtension)

    def prepare_body(path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        pinnable = is_pinnable(path)
        if pinnable:
            body, overridden = pin_body(
                body,
                marker_seed=state.pins.seed,
                default_seed=settings.default_seed,
                params=state.pins.params,
            )
            for key in overridden:
                warnings.warn(
                    SeedReproWarning(
                        f"{item.nodeid}: a marker pinned {key!r}, overriding the value the call passed"
                    ),
                    stacklevel=_caller_stacklevel(),
                )
        hook.pytest_seedrepro_request(request=body, item=item)
        return body, pinnable

    def on_error(call: Call, exc: BaseException) -> BaseException | None:
        if state.cassette is not None:
            import pytest_seedrepro.recording as recording

            if recording.is_missing_recording(exc):
                message = recording.describe_missing(call, item.nodeid, state.cassette)
                call.error = message
                if message not in state.problems:  # calls of one test often share seed and model
                    state.problems.append(message)
                return recording.MissingRecording(message)
        # An API error (429, 5xx, timeout, connection): the test errors with the
        # API's own message, and nothing of this test is written.
        # (_decide_saving turns saving off for any problem.)
        call.error = f"{type(exc).__name__}: {exc}"
        state.problems.append(f"seedrepro: {item.nodeid}: call {call.index} failed: {call.error}")
        return None

    with ExitStack() as stack:
        env = stack.enter_context(pytest.MonkeyPatch.context())
        # Clients the code under test builds read these from the environment.
        env.setenv("OPENAI_API_KEY", api_key)
        if settings.base_url:
            env.setenv("OPENAI_BASE_URL", settings.base_url)
        if settings.mode != "live":
            import pytest_seedrepro.recording as recording

            state.cassette = recording.cassette_path(item.path, item.nodeid, settings.cassette_dir)
            state.persister = recording.AtomicPersister(
                state.calls, ignore_existing=settings.mode == "rerecord"
            )
            # Registered before the cassette, so it sees a failed save and makes it one line.
            stack.push(_explain_unwritten_recording)
            try:
                stack.enter_context(recording.open_cassette(state.cassette, settings.mode, state.persister))
            except recording.CorruptRecording as exc:
                pytest.fail(
                    f"seedrepro: {item.nodeid}: cannot read the recording {exc}. Fix or delete the file, "
                    f"then re-record it with: pytest --seedrepro-mode=rerecord '{item.nodeid}'",
                    pytrace=False,
                )
            # Registered after the cassette, so it runs before the cassette saves.
            stack.callback(_decide_saving, state)
        intercept.install()
        replaying = settings.mode == "replay"
        intercept.activate(intercept.ActiveTest(state.calls, prepare_body, on_error, retries=not replaying))
        stack.callback(intercept.activate, None)
        yield SeededLLM(run, state, api_key)


def _explain_unwritten_recording(exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
    import pytest_seedrepro.recording as recording

    if isinstance(exc, recording.RecordingNotWritten):
        pytest.fail(f"seedrepro: {exc}", pytrace=False)
    return False


def _decide_saving(state: TestState) -> None:
    if state.persister is not None and (state.problems or state.keep_files_as_they_were):
        state.persister.allow_save = False
