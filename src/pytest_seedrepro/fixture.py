"""The ``seeded_llm`` fixture's object and the set-up/tear-down around each test."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from pytest_seedrepro import intercept, markers
from pytest_seedrepro.calls import Call, is_pinnable
from pytest_seedrepro.pinning import pin_body
from pytest_seedrepro.session import RUN_STATE, RunState
from pytest_seedrepro.warnings import SeedReproWarning

if TYPE_CHECKING:
    import openai

#: Used when no OPENAI_API_KEY is set. The SDK refuses to build a client
#: without a key, even when every answer comes from a recording. Never stored:
#: the Authorization header is filtered out of every recording.
PLACEHOLDER_API_KEY = "sk-seedrepro-placeholder-not-a-real-key"

CALLS = pytest.StashKey[list[Call]]()

Prompt = str | Sequence[dict[str, Any]]


class SeededLLM:
    """What a test gets from ``seeded_llm``: pinned clients, a shortcut, and the calls made."""

    def __init__(
        self, run: RunState, item: pytest.Item, pins: markers.Pins, calls: list[Call], api_key: str
    ) -> None:
        self._run = run
        self._item = item
        self._api_key = api_key
        self._client: openai.OpenAI | None = None
        self._async_client: openai.AsyncOpenAI | None = None
        #: The effective seed: the ``seed`` marker's, else the default seed.
        self.seed: int = pins.seed if pins.seed is not None else run.settings.default_seed
        #: The pinned request parameters (``llm_params``, merged module > class > function).
        self.params: dict[str, Any] = dict(pins.params)
        #: Calls made so far by this test, by any OpenAI client, in issue order.
        self.calls: list[Call] = calls

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


@contextmanager
def seeded_llm_for(request: pytest.FixtureRequest) -> Iterator[SeededLLM]:
    """Pin, observe (and later record and snapshot) every OpenAI call of one test."""
    item = request.node
    assert isinstance(item, pytest.Item)
    run = request.config.stash[RUN_STATE]
    settings = run.settings
    pins = markers.resolve(item)  # already validated at collection
    hook = request.config.hook
    seed_marker = pins.seed

    def prepare_body(path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        pinnable = is_pinnable(path)
        if pinnable:
            body, overridden = pin_body(
                body, marker_seed=seed_marker, default_seed=settings.default_seed, params=pins.params
            )
            for key in overridden:
                warnings.warn(
                    SeedReproWarning(
                        f"{item.nodeid}: a marker pinned {key!r}, overriding the value the call passed"
                    ),
                    stacklevel=2,
                )
        hook.pytest_seedrepro_request(request=body, item=item)
        return body, pinnable

    calls: list[Call] = []
    item.stash[CALLS] = calls
    test = intercept.ActiveTest(prepare_body)
    test.calls = calls
    intercept.install()
    with pytest.MonkeyPatch.context() as env:
        import os

        api_key = os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY
        # Clients the code under test builds read these from the environment.
        env.setenv("OPENAI_API_KEY", api_key)
        if settings.base_url:
            env.setenv("OPENAI_BASE_URL", settings.base_url)
        intercept.activate(test)
        try:
            yield SeededLLM(run, item, pins, calls, api_key)
        finally:
            intercept.activate(None)
