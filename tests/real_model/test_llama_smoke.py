"""Smoke tests of the real llama.cpp server through the openai SDK (not the plugin)."""

from __future__ import annotations

import pytest

from llama import LlamaServer

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.real_model

MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]


def _chat(client: object, seed: int, **kwargs: object) -> object:
    return client.chat.completions.create(  # type: ignore[attr-defined]
        model="gemma3-270m",
        messages=MESSAGES,
        seed=seed,
        temperature=0.8,
        max_tokens=24,
        **kwargs,
    )


def test_same_seed_same_text(llama_server: LlamaServer) -> None:
    with openai.OpenAI(base_url=llama_server.base_url, api_key="unused", max_retries=0) as client:
        first = _chat(client, seed=123).choices[0].message.content  # type: ignore[attr-defined]
        second = _chat(client, seed=123).choices[0].message.content  # type: ignore[attr-defined]
        others = {_chat(client, seed=s).choices[0].message.content for s in (1, 2, 3)}  # type: ignore[attr-defined]
    assert first, "empty completion"
    assert first == second
    assert len(others) >= 2, "different seeds should sample different texts at temperature 0.8"


def test_response_carries_system_fingerprint(llama_server: LlamaServer) -> None:
    with openai.OpenAI(base_url=llama_server.base_url, api_key="unused", max_retries=0) as client:
        response = _chat(client, seed=7)
        fingerprint = response.system_fingerprint  # type: ignore[attr-defined]
        assert isinstance(fingerprint, str) and fingerprint
        pieces: list[str] = []
        chunk_fingerprints: set[object] = set()
        for chunk in _chat(client, seed=7, stream=True):  # type: ignore[attr-defined]
            chunk_fingerprints.add(chunk.system_fingerprint)
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert chunk_fingerprints == {fingerprint}
    assert "".join(pieces) == response.choices[0].message.content  # type: ignore[attr-defined]


def test_same_seed_same_text_after_restart(llama_server: LlamaServer) -> None:
    with openai.OpenAI(base_url=llama_server.base_url, api_key="unused", max_retries=0) as client:
        before = _chat(client, seed=42).choices[0].message.content  # type: ignore[attr-defined]
        llama_server.restart()  # same port, so the client's base_url still holds
        after = _chat(client, seed=42).choices[0].message.content  # type: ignore[attr-defined]
    assert before == after
