"""Smoke tests of the real llama.cpp server through the openai SDK (not the plugin)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from llama import LlamaServer

pytestmark = pytest.mark.real_model

MESSAGES: list[Any] = [{"role": "user", "content": "Write one sentence about the sea."}]


def _client(server: LlamaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _text(client: openai.OpenAI, seed: int) -> str:
    response = client.chat.completions.create(
        model="gemma3-270m", messages=MESSAGES, seed=seed, temperature=0.8, max_tokens=24
    )
    return response.choices[0].message.content or ""


def test_same_seed_same_text(llama_server: LlamaServer) -> None:
    with _client(llama_server) as client:
        first, second = _text(client, 123), _text(client, 123)
        others = {_text(client, seed) for seed in (1, 2, 3)}
    assert first, "empty completion"
    assert first == second
    assert len(others) >= 2, "different seeds should sample different texts at temperature 0.8"


def test_response_carries_system_fingerprint(llama_server: LlamaServer) -> None:
    with _client(llama_server) as client:
        response = client.chat.completions.create(
            model="gemma3-270m", messages=MESSAGES, seed=7, temperature=0.8, max_tokens=24
        )
        fingerprint = response.system_fingerprint
        assert isinstance(fingerprint, str) and fingerprint
        stream = client.chat.completions.create(
            model="gemma3-270m", messages=MESSAGES, seed=7, temperature=0.8, max_tokens=24, stream=True
        )
        pieces: list[str] = []
        chunk_fingerprints: set[str | None] = set()
        for chunk in stream:
            chunk_fingerprints.add(chunk.system_fingerprint)
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert chunk_fingerprints == {fingerprint}
    assert "".join(pieces) == response.choices[0].message.content


def test_same_seed_same_text_after_restart(llama_server: LlamaServer) -> None:
    with _client(llama_server) as client:
        before = _text(client, 42)
        llama_server.restart()  # same port, so the client's base_url still holds
        after = _text(client, 42)
    assert before == after
