"""Tests of the fake OpenAI server itself, through the real openai SDK over real HTTP.

The plugin's tests trust llmserver to behave like the servers it imitates; these tests are what earns
that trust.  They run against whichever openai SDK is installed (1.x on httpx, 3.x on httpx2), so every
check is written against the SDK's public surface only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import gzip
import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from llmserver import LLMServer, generate_json, llm_server, running_server

# The fixture is imported so pytest finds it in this module; referencing it here keeps linters quiet.
__all__ = ["llm_server"]

MODEL = "gpt-4o-mini"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three things in a kitchen."},
]
PROMPT_WORDS = 3 + 6  # whitespace-separated words in MESSAGES' contents

# Marks "the key is not in the JSON at all", as opposed to a JSON null.
ABSENT = "<absent>"


@pytest.fixture
def client(llm_server: LLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm_server.base_url, api_key="sk-test", max_retries=0) as sync_client:
        yield sync_client


def async_client(server: LLMServer, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", **options)


def chat_text(client: openai.OpenAI, **params: Any) -> str:
    completion: ChatCompletion = client.chat.completions.create(
        model=params.pop("model", MODEL), messages=MESSAGES, **params
    )
    content = completion.choices[0].message.content
    assert content is not None
    return content


def fingerprint_field(obj: Any) -> object:
    """The object's system_fingerprint as sent: ABSENT when the key was missing, else its value."""
    return obj.system_fingerprint if "system_fingerprint" in obj.model_fields_set else ABSENT


def raw_request(
    server: LLMServer, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request without the SDK, to see the wire exactly (headers, compression, status)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def is_connection_cut(error: BaseException) -> bool:
    """openai 3.x wraps a truncated body in APIConnectionError; 1.x lets httpx's error through."""
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, openai.APIConnectionError) or type(current).__name__ == "RemoteProtocolError":
            return True
        current = current.__cause__
    return False


# ------------------------------------------------------------------------------------ determinism


def test_same_inputs_give_same_text_equal_to_expected_text(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=7, temperature=0.5)
    second = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=7, temperature=0.5)

    expected = llm_server.expected_text(seed=7, model=MODEL, temperature=0.5, messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content == expected
    assert len(expected.split()) == 12
    assert expected.count("\n") == 2  # several lines, so snapshot diffs are line diffs
    assert first.id != second.id
    assert first.id.startswith("chatcmpl-")
    assert first.object == "chat.completion"
    assert first.model == MODEL
    assert first.system_fingerprint == "fp_test_1"
    assert first.choices[0].finish_reason == "stop"
    assert first.choices[0].message.role == "assistant"
    assert first.usage is not None
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (PROMPT_WORDS, 12)
    assert first.usage.total_tokens == PROMPT_WORDS + 12


def test_temperature_zero_int_and_float_agree(llm_server: LLMServer, client: openai.OpenAI) -> None:
    assert chat_text(client, seed=1, temperature=0) == chat_text(client, seed=1, temperature=0.0)


def test_different_seeds_give_different_texts(llm_server: LLMServer, client: openai.OpenAI) -> None:
    texts = [chat_text(client, seed=seed) for seed in range(8)]
    assert len(set(texts)) >= 7
    unseeded = chat_text(client)
    assert unseeded == chat_text(client)  # no seed is still deterministic
    assert unseeded == llm_server.expected_text(seed=None, model=MODEL, temperature=None, messages=MESSAGES)


@pytest.mark.parametrize(
    "change",
    [{"model": "gpt-4o-mini-2024-07-18"}, {"temperature": 0.9}, {"max_tokens": 12}],
    ids=["model", "temperature", "max_tokens"],
)
def test_each_input_changes_the_text(client: openai.OpenAI, change: dict[str, Any]) -> None:
    assert chat_text(client, seed=3, **change) != chat_text(client, seed=3)


def test_changing_variant_changes_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    before = chat_text(client, seed=5)
    llm_server.variant = "model-updated"
    after = chat_text(client, seed=5)
    assert after != before
    assert after == llm_server.expected_text(seed=5, model=MODEL, temperature=None, messages=MESSAGES)


@pytest.mark.parametrize("limit_name", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_limits_words_and_reports_length(client: openai.OpenAI, limit_name: str) -> None:
    limit: dict[str, Any] = {limit_name: 7}
    completion: ChatCompletion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, seed=2, **limit
    )
    text = completion.choices[0].message.content
    assert text is not None
    assert len(text.split()) == 7
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 7


def test_max_tokens_above_cap_stops_normally(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=2, max_tokens=500)
    assert len((completion.choices[0].message.content or "").split()) == 64
    assert completion.choices[0].finish_reason == "stop"


# -------------------------------------------------------------------------------------- streaming


def test_chat_stream_joins_to_non_streamed_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    whole = chat_text(client, seed=11)
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, seed=11, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    contents = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(contents) == whole
    assert len(chunks) == 1 + 12 + 1 + 1  # role chunk, one per word, finish chunk, usage chunk
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * 13 + ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert {c.id for c in chunks} == {chunks[0].id}
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_chat_stream_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=1, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_async_chat_stream_joins_to_non_streamed_text(llm_server: LLMServer) -> None:
    async with async_client(llm_server) as aclient:
        whole = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, seed=12)
        stream = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, seed=12, stream=True)
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    expected = llm_server.expected_text(seed=12, model=MODEL, temperature=None, messages=MESSAGES)
    assert whole.choices[0].message.content == expected
    assert "".join(pieces) == expected


def test_legacy_completions_streamed_and_not(llm_server: LLMServer, client: openai.OpenAI) -> None:
    prompt = "Once upon a time"
    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt, seed=4, max_tokens=9)
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=prompt, seed=4, max_tokens=9, stream=True
        )
    )

    expected = llm_server.expected_text(
        seed=4, model="gpt-3.5-turbo-instruct", temperature=None, prompt=prompt, max_tokens=9
    )
    assert whole.object == "text_completion"
    assert whole.choices[0].text == expected
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (4, 9)
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert len(chunks) == 9 + 1
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.object == "text_completion" for c in chunks)
    # A chat request with the same words must not collide with the legacy prompt.
    assert expected != llm_server.expected_text(
        seed=4,
        model="gpt-3.5-turbo-instruct",
        temperature=None,
        messages=[{"role": "user", "content": prompt}],
    )


def test_n_choices_whole_and_streamed_chat_and_legacy(llm_server: LLMServer, client: openai.OpenAI) -> None:
    expected = [
        llm_server.expected_text(seed=5, model=MODEL, temperature=None, messages=MESSAGES, choice=index)
        for index in range(3)
    ]
    assert len(set(expected)) == 3
    assert chat_text(client, seed=5) == expected[0]  # choice 0 is the answer without n
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=5, n=3)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert [c.message.content for c in whole.choices] == expected
    assert whole.usage is not None and whole.usage.completion_tokens == 3 * 12
    texts: dict[int, str] = {}
    order = []
    for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=5, n=3, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            order.append(choice.index)
    assert [texts[index] for index in range(3)] == expected
    assert order[:3] == [0, 1, 2]  # interleaved, as OpenAI streams them
    prompt, legacy = "Once upon a time", "gpt-3.5-turbo-instruct"
    legacy_expected = [
        llm_server.expected_text(seed=5, model=legacy, temperature=None, prompt=prompt, choice=index)
        for index in range(2)
    ]
    assert [c.text for c in client.completions.create(model=legacy, prompt=prompt, seed=5, n=2).choices] == (
        legacy_expected
    )
    pieces: dict[int, str] = {0: "", 1: ""}
    for chunk in client.completions.create(model=legacy, prompt=prompt, seed=5, n=2, stream=True):
        for choice in chunk.choices:
            pieces[choice.index] += choice.text
    assert [pieces[0], pieces[1]] == legacy_expected
    with pytest.raises(openai.BadRequestError, match="'n' must be at least 1"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, n=0)


# ---------------------------------------------------------------------------------- fingerprints


FP = "fp_custom_9"


def expected_chunk_fingerprints(style: str, count: int) -> list[object]:
    """What each of ``count`` stream chunks should carry under ``style`` (see llmserver._stamp_chunks)."""
    by_style: dict[str, Sequence[object]] = {
        "every": [FP] * count,
        "last": [None] * (count - 1) + [FP],
        "first_null": [None] + [FP] * (count - 1),
        "absent": [ABSENT] * count,
        "constant": ["fp_ollama"] * count,
        "disagree": [FP] * (count // 2) + [FP + "_b"] * (count - count // 2),
    }
    return list(by_style[style])


@pytest.mark.parametrize("style", ["every", "last", "first_null", "absent", "constant", "disagree"])
@pytest.mark.parametrize("include_usage", [False, True], ids=["no_usage", "usage"])
def test_fingerprint_styles_in_chat_streams(
    llm_server: LLMServer, client: openai.OpenAI, style: str, include_usage: bool
) -> None:
    llm_server.fingerprint = FP
    llm_server.fingerprint_style = style
    stream = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        seed=1,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": include_usage},
    )
    observed = [fingerprint_field(chunk) for chunk in stream]
    assert len(observed) == 1 + 5 + 1 + include_usage
    assert observed == expected_chunk_fingerprints(style, len(observed))


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("every", FP),
        ("last", FP),
        ("first_null", FP),
        ("absent", ABSENT),
        ("constant", "fp_ollama"),
        ("disagree", FP),
    ],
)
def test_fingerprint_styles_in_non_streamed_answers(
    llm_server: LLMServer, client: openai.OpenAI, style: str, expected: object
) -> None:
    llm_server.fingerprint = FP
    llm_server.fingerprint_style = style
    chat = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    legacy = client.completions.create(model=MODEL, prompt="hello")
    assert fingerprint_field(chat) == expected
    assert fingerprint_field(legacy) == expected


def test_fingerprint_styles_apply_to_legacy_streams(llm_server: LLMServer, client: openai.OpenAI) -> None:
    llm_server.fingerprint = FP
    llm_server.fingerprint_style = "last"
    observed = [fingerprint_field(c) for c in client.completions.create(model=MODEL, prompt="x", stream=True)]
    assert observed == expected_chunk_fingerprints("last", len(observed))


def test_fingerprint_none_is_sent_as_null(llm_server: LLMServer, client: openai.OpenAI) -> None:
    llm_server.fingerprint = None
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert fingerprint_field(completion) is None


def test_unknown_fingerprint_style_is_reported_not_guessed(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    llm_server.fingerprint_style = "evrey"
    with pytest.raises(openai.InternalServerError, match="evrey"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)


# ------------------------------------------------------------------------------ model and headers


def test_model_override_replaces_model_but_not_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    before = chat_text(client, seed=9)
    llm_server.model_override = "gpt-4o-mini-2099-01-01"
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=9)
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=9, stream=True))
    assert completion.model == "gpt-4o-mini-2099-01-01"
    assert {c.model for c in chunks} == {"gpt-4o-mini-2099-01-01"}
    assert completion.choices[0].message.content == before
    assert llm_server.requests[-1].body is not None and llm_server.requests[-1].body["model"] == MODEL


def test_sentinel_response_headers_and_fresh_request_ids(client: openai.OpenAI) -> None:
    first = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert first.headers["openai-organization"] == "org-server-sentinel"
    assert first.headers["openai-project"] == "proj_server_sentinel"
    assert first.headers["set-cookie"] == "__cf_bm=server-cookie-sentinel; path=/"
    assert first.headers["openai-processing-ms"] == "12"
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_request_log_records_what_the_sdk_sent(llm_server: LLMServer, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=21, temperature=0.25)
    client.models.list()

    assert [(r.method, r.path) for r in llm_server.requests] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    chat = llm_server.requests[0]
    assert chat.headers["authorization"] == "Bearer sk-test"
    assert chat.headers["content-type"] == "application/json"
    assert chat.body == {"model": MODEL, "messages": MESSAGES, "seed": 21, "temperature": 0.25}
    assert json.loads(chat.raw_body) == chat.body
    assert chat.query == ""
    assert llm_server.requests[1].body is None


def test_models_list(client: openai.OpenAI) -> None:
    assert MODEL in [model.id for model in client.models.list()]


def test_unknown_path_is_a_logged_openai_style_404(llm_server: LLMServer) -> None:
    status, _, body = raw_request(llm_server, "POST", "/v1/embeddingz?x=1", {"input": "a"})
    assert status == 404
    assert json.loads(body)["error"]["message"] == "Unknown request URL: /v1/embeddingz"
    assert (llm_server.requests[0].path, llm_server.requests[0].query) == ("/v1/embeddingz", "x=1")
    assert llm_server.requests[0].body == {"input": "a"}


def test_malformed_body_is_a_400(llm_server: LLMServer, client: openai.OpenAI) -> None:
    status, _, body = raw_request(llm_server, "POST", "/v1/chat/completions", {"model": MODEL})
    assert status == 400
    assert "messages" in json.loads(body)["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"seed": "x"})


# ------------------------------------------------------------------------------------ responses API

#: openai < 1.66 (the floor is 1.55.3) has no Responses API in the SDK.
needs_responses_api = pytest.mark.skipif(
    not hasattr(openai.OpenAI, "responses"), reason="this openai SDK has no Responses API"
)


@needs_responses_api
def test_responses_endpoint_output_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="Tell me a story")
    assert response.output_text == llm_server.expected_text(
        seed=None, model=MODEL, temperature=None, prompt="Tell me a story"
    )
    assert response.status == "completed"
    assert response.object == "response"
    assert response.usage is not None
    assert response.usage.output_tokens == 12
    assert response.usage.input_tokens == 4
    assert llm_server.requests[-1].path == "/v1/responses"


@needs_responses_api
def test_responses_conversation_with_previous_response_id_and_items_passed_back(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    first = client.responses.create(model=MODEL, input="Tell me a story")
    again = client.responses.create(model=MODEL, input="Tell me a story")
    assert first.id.startswith("resp_") and first.output[0].id.startswith("msg_")
    assert again.id != first.id and again.output[0].id != first.output[0].id  # fresh ids every answer
    follow = client.responses.create(model=MODEL, input="And then?", previous_response_id=first.id)
    assert follow.previous_response_id == first.id
    assert follow.output_text == llm_server.expected_text(
        seed=None, model=MODEL, temperature=None, prompt="And then?"
    )
    history: list[Any] = [
        {"role": "user", "content": "Tell me a story"},
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"role": "user", "content": "And then?"},
    ]
    passed_back = client.responses.create(model=MODEL, input=history)
    # The same conversation with the other answer's item ids: the ids change nothing.
    other = [history[0], *(item.model_dump(exclude_none=True) for item in again.output), history[2]]
    assert client.responses.create(model=MODEL, input=other).output_text == passed_back.output_text
    assert passed_back.output_text == llm_server.expected_text(
        seed=None, model=MODEL, temperature=None, messages=history
    )


# ------------------------------------------------------------------------------------------ gzip


def test_non_streamed_json_is_gzipped_when_accepted(llm_server: LLMServer) -> None:
    request = {"model": MODEL, "messages": MESSAGES, "seed": 1}
    headers = {"Accept-Encoding": "gzip, deflate", "Content-Type": "application/json"}
    status, response_headers, body = raw_request(llm_server, "POST", "/v1/chat/completions", request, headers)
    assert status == 200
    assert response_headers["content-encoding"] == "gzip"
    assert int(response_headers["content-length"]) == len(body)
    completion = json.loads(gzip.decompress(body))
    assert completion["choices"][0]["message"]["content"] == llm_server.expected_text(
        seed=1, model=MODEL, temperature=None, messages=MESSAGES
    )


def test_no_gzip_when_disabled_not_accepted_or_streaming(llm_server: LLMServer) -> None:
    request = {"model": MODEL, "messages": MESSAGES}
    _, plain_headers, plain = raw_request(llm_server, "POST", "/v1/chat/completions", request)
    assert "content-encoding" not in plain_headers
    assert json.loads(plain)["object"] == "chat.completion"

    zstd_only = {"Accept-Encoding": "zstd, br"}
    _, zstd_headers, _ = raw_request(llm_server, "POST", "/v1/chat/completions", request, zstd_only)
    assert "content-encoding" not in zstd_headers

    accepts_gzip = {"Accept-Encoding": "gzip"}
    stream_request = {**request, "stream": True}
    _, sse_headers, sse = raw_request(
        llm_server, "POST", "/v1/chat/completions", stream_request, accepts_gzip
    )
    assert "content-encoding" not in sse_headers
    assert sse_headers["content-type"].startswith("text/event-stream")
    assert sse.endswith(b"data: [DONE]\n\n")

    llm_server.gzip = False
    _, off_headers, _ = raw_request(llm_server, "POST", "/v1/chat/completions", request, accepts_gzip)
    assert "content-encoding" not in off_headers


# ------------------------------------------------------------------------------- injected faults


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(500, openai.InternalServerError), (429, openai.RateLimitError), (503, openai.InternalServerError)],
)
def test_fail_next_raises_the_sdk_error_and_is_logged(
    llm_server: LLMServer, client: openai.OpenAI, status: int, error_class: type[openai.APIStatusError]
) -> None:
    llm_server.fail_next(status, message="boom from the test")
    with pytest.raises(error_class, match="boom from the test") as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=1)
    assert caught.value.status_code == status
    assert (caught.value.type, caught.value.code) == ("rate_limit" if status == 429 else "server_error", None)
    assert caught.value.response.headers["retry-after"] == "0"
    # The SDK treats "retry-after: 0" as absent; 1 ms is what really makes its retries instant.
    assert caught.value.response.headers["retry-after-ms"] == "1"
    assert len(llm_server.requests) == 1
    assert llm_server.requests[0].body is not None and llm_server.requests[0].body["seed"] == 1
    # Only one failure was injected: the next request succeeds.
    assert chat_text(client, seed=1)


@needs_responses_api
def test_failures_are_consumed_in_order_and_only_by_completion_requests(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    llm_server.fail_next(429)
    llm_server.fail_next(500, count=2)
    client.models.list()  # not a completion request: consumes nothing
    with pytest.raises(openai.RateLimitError):
        client.completions.create(model=MODEL, prompt="a")
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=MODEL, input="a")
    with pytest.raises(openai.InternalServerError):
        chat_text(client)
    assert chat_text(client)


def test_sdk_retries_through_injected_failures(llm_server: LLMServer) -> None:
    llm_server.fail_next(500, count=2)
    with openai.OpenAI(base_url=llm_server.base_url, api_key="sk-test", max_retries=2) as retrying:
        assert chat_text(retrying, seed=1) == llm_server.expected_text(
            seed=1, model=MODEL, temperature=None, messages=MESSAGES
        )
    retry_counts = [r.headers.get("x-stainless-retry-count") for r in llm_server.requests]
    assert retry_counts == ["0", "1", "2"]


def test_hang_next_times_out_the_client_and_stop_still_returns(llm_server: LLMServer) -> None:
    llm_server.hang_next(120)
    with openai.OpenAI(
        base_url=llm_server.base_url, api_key="sk-test", max_retries=0, timeout=0.3
    ) as impatient:
        with pytest.raises(openai.APITimeoutError):
            chat_text(impatient)
        assert chat_text(impatient)  # the hang was used up
    assert len(llm_server.requests) == 2

    # stop() must wake the 120 s sleeper rather than wait for it; run it where a hang can't block the
    # test session forever, with a bound that is a deadlock guard, not a timing measurement.
    stopper = threading.Thread(target=llm_server.stop)
    stopper.start()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    assert llm_server.active_handlers == 0  # the sleeping handler was woken and has finished
    with pytest.raises(ConnectionRefusedError):
        raw_request(llm_server, "GET", "/v1/models")


def test_cut_stream_is_an_error_after_the_given_chunks(llm_server: LLMServer, client: openai.OpenAI) -> None:
    llm_server.cut_next_stream(after_chunks=3)
    received: list[str] = []
    with pytest.raises(Exception) as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=8, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert is_connection_cut(caught.value), repr(caught.value)
    assert len(received) == 3
    expected = llm_server.expected_text(seed=8, model=MODEL, temperature=None, messages=MESSAGES)
    assert expected.startswith("".join(received)) and "".join(received) != expected

    # Only the next stream was cut.
    complete = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=8, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in complete) == expected


@pytest.mark.asyncio
async def test_async_cut_stream_is_an_error(llm_server: LLMServer) -> None:
    llm_server.cut_next_stream(after_chunks=100)  # more than there are chunks: still no [DONE]
    async with async_client(llm_server) as aclient:
        stream = await aclient.completions.create(model=MODEL, prompt="p", stream=True)
        received: list[str] = []
        with pytest.raises(Exception) as caught:
            async for chunk in stream:
                received.append(chunk.choices[0].text)
    assert is_connection_cut(caught.value), repr(caught.value)
    assert "".join(received) == llm_server.expected_text(seed=None, model=MODEL, temperature=None, prompt="p")


def test_cut_applies_only_to_streams(llm_server: LLMServer, client: openai.OpenAI) -> None:
    llm_server.cut_next_stream()
    assert chat_text(client)  # non-streamed: not cut, and the cut stays pending
    with pytest.raises(Exception) as caught:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert is_connection_cut(caught.value)


# ------------------------------------------------------------------------------ lifecycle and reset


def test_restart_on_same_port_keeps_the_log_and_knobs() -> None:
    with running_server() as server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        server.variant = "kept"
        with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as sync_client:
            before = chat_text(sync_client, seed=1)
            server.stop()
            server.stop()  # idempotent
            with pytest.raises(openai.APIConnectionError):
                chat_text(sync_client, seed=1)  # also on the pooled keep-alive connection
            with pytest.raises(ConnectionRefusedError):
                raw_request(server, "GET", "/v1/models")

            server.start(port)
            assert server.port == port
            assert chat_text(sync_client, seed=1) == before
        assert len(server.requests) == 2
        assert server.variant == "kept"


def test_start_twice_is_an_error(llm_server: LLMServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        llm_server.start()


def test_reset_clears_log_injections_and_knobs(llm_server: LLMServer, client: openai.OpenAI) -> None:
    default_text = chat_text(client, seed=1)
    llm_server.variant = "v2"
    llm_server.fingerprint = "fp_other"
    llm_server.fingerprint_style = "absent"
    llm_server.model_override = "other"
    llm_server.gzip = False
    llm_server.response_headers["x-extra"] = "1"
    llm_server.fail_next(500, count=3)
    llm_server.hang_next(60)
    llm_server.cut_next_stream()

    llm_server.reset()

    assert llm_server.requests == []
    completion = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, seed=1)
    parsed = completion.parse()
    assert parsed.choices[0].message.content == default_text
    assert (parsed.model, parsed.system_fingerprint) == (MODEL, "fp_test_1")
    assert "x-extra" not in completion.headers
    assert completion.headers["content-encoding"] == "gzip"
    assert list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))


# ------------------------------------------------------------------------------------- concurrency


@pytest.mark.asyncio
async def test_five_concurrent_async_requests(llm_server: LLMServer) -> None:
    async with async_client(llm_server) as aclient:

        async def streamed(seed: int) -> str:
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=MESSAGES, seed=seed, stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

        async def whole(seed: int) -> str:
            completion = await aclient.chat.completions.create(model=MODEL, messages=MESSAGES, seed=seed)
            return completion.choices[0].message.content or ""

        seeds = range(100, 105)
        texts = await asyncio.gather(*[streamed(s) for s in seeds], *[whole(s) for s in seeds])

    expected = [
        llm_server.expected_text(seed=s, model=MODEL, temperature=None, messages=MESSAGES) for s in seeds
    ]
    assert texts == expected + expected
    assert len(llm_server.requests) == 10


def test_concurrent_sync_streams_from_threads(llm_server: LLMServer, client: openai.OpenAI) -> None:
    def streamed(seed: int) -> str:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=seed, stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream)

    seeds = list(range(5))
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        texts = list(pool.map(streamed, seeds))
    assert texts == [
        llm_server.expected_text(seed=s, model=MODEL, temperature=None, messages=MESSAGES) for s in seeds
    ]


def test_meet_next_holds_requests_sent_together_and_the_log_shows_them_overlap(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    llm_server.meet_next(3)
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda seed: chat_text(client, seed=seed), range(3)))
    together = llm_server.requests
    assert all(a.overlaps(b) for a in together for b in together if a is not b)
    assert max(r.arrived for r in together) < min(r.finished or 0 for r in together)


@pytest.mark.parametrize("stream", [False, True])
def test_latency_delays_answers_and_requests_sent_one_at_a_time_never_overlap(
    llm_server: LLMServer, client: openai.OpenAI, stream: bool
) -> None:
    def ask(seed: int) -> None:
        if stream:
            list(client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=seed, stream=True))
        else:
            chat_text(client, seed=seed)

    # A delayed answer is still unfinished once its request has arrived (1 s: no race with the check).
    llm_server.latency = 1.0
    asking = threading.Thread(target=ask, args=(0,))
    asking.start()
    deadline = time.monotonic() + 30  # a hang guard, not a timing measurement
    while not llm_server.requests and time.monotonic() < deadline and asking.is_alive():
        threading.Event().wait(0.01)
    assert llm_server.requests and llm_server.requests[0].finished is None
    asking.join(timeout=30)
    assert llm_server.requests[0].finished is not None
    llm_server.reset()
    llm_server.latency = 0.05
    for seed in range(3):
        ask(seed)
    first, second, third = llm_server.requests
    assert not first.overlaps(second) and not second.overlaps(third)
    assert [r.arrived < (r.finished or 0) for r in (first, second, third)] == [True] * 3


def test_a_stream_spreads_latency_over_its_events(llm_server: LLMServer, client: openai.OpenAI) -> None:
    """Its headers come at once: a request sent while the stream is read overlaps it."""
    llm_server.latency = 0.3
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, seed=1, stream=True)
    chat_text(client, seed=2)  # while the stream is still being generated
    list(stream)
    streamed, whole = llm_server.requests
    assert streamed.overlaps(whole)


def test_stop_wakes_requests_waiting_to_meet(llm_server: LLMServer) -> None:
    llm_server.meet_next(2, timeout=120)
    with openai.OpenAI(base_url=llm_server.base_url, api_key="sk-test", max_retries=0, timeout=60) as alone:
        errors: list[BaseException] = []

        def call() -> None:
            try:
                chat_text(alone)
            except openai.APIConnectionError as exc:
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 30  # a hang guard, not a timing measurement
        while not llm_server.requests:
            if time.monotonic() > deadline or not caller.is_alive():
                pytest.fail(f"the request never reached the server: {errors}")
            threading.Event().wait(0.01)
        stopper = threading.Thread(target=llm_server.stop)
        stopper.start()
        stopper.join(timeout=30)  # a deadlock guard, not a timing measurement
        caller.join(timeout=30)
    assert not stopper.is_alive() and not caller.is_alive()
    assert len(errors) == 1 and llm_server.requests[0].finished is None


# ------------------------------------------------------------------------------------ tool calls

WEATHER = {
    "name": "get_weather",
    "description": "The weather forecast for a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days", "unit"],
        "additionalProperties": False,
    },
}
CLOCK = {
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"],
    },
}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}]
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def expected_arguments(server: LLMServer, function: dict[str, Any], **inputs: Any) -> str:
    """The arguments the server should send for ``function`` given chat ``inputs`` (default: MESSAGES)."""
    inputs.setdefault("seed", None)
    inputs.setdefault("temperature", None)
    inputs.setdefault("messages", MESSAGES)
    return server.expected_tool_arguments(
        name=function["name"], parameters=function.get("parameters"), model=MODEL, **inputs
    )


def answered(messages: Sequence[Any], message: Any, results: Sequence[str]) -> list[Any]:
    """``messages`` followed by the assistant's tool calls (as a client sends them back) and their results."""
    calls = [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.function.name, "arguments": c.function.arguments},
        }
        for c in message.tool_calls
    ]
    results_messages = [
        {"role": "tool", "tool_call_id": call["id"], "content": result}
        for call, result in zip(calls, results, strict=True)
    ]
    return [*messages, {"role": "assistant", "content": None, "tool_calls": calls}, *results_messages]


def chat_stream_helper(client: openai.OpenAI) -> Any:
    """``client.chat.completions.stream`` (openai >= 1.92), else the older ``client.beta`` one."""
    return getattr(client.chat.completions, "stream", None) or client.beta.chat.completions.stream


def chat_parse_helper(client: openai.OpenAI) -> Any:
    """``client.chat.completions.parse`` (openai >= 1.92), else the older ``client.beta`` one."""
    return getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse


def test_tool_loop_call_result_then_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS[:1], seed=3)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.role == "assistant"
    [call] = choice.message.tool_calls or []
    assert CALL_ID.fullmatch(call.id)
    assert (call.type, call.function.name) == ("function", "get_weather")
    arguments = json.loads(call.function.arguments)
    assert list(arguments) == ["city", "days", "unit"]
    assert isinstance(arguments["city"], str) and arguments["city"]
    assert 1 <= arguments["days"] <= 7
    assert arguments["unit"] == "celsius"
    assert call.function.arguments == expected_arguments(llm_server, WEATHER, seed=3)
    assert first.usage is not None and first.usage.completion_tokens > 0

    second_messages = answered(MESSAGES, choice.message, ["Sunny, 21 degrees."])
    second = client.chat.completions.create(model=MODEL, messages=second_messages, tools=TOOLS[:1], seed=3)
    final = second.choices[0]
    assert final.finish_reason == "stop"
    assert final.message.tool_calls is None
    # The final text is generated from the whole conversation, tool result included, but not from
    # the call ids, which are fresh on every run: a made-up id gives the same text.
    assert final.message.content == llm_server.expected_text(
        seed=3, model=MODEL, temperature=None, messages=second_messages
    )
    renamed = json.loads(json.dumps(second_messages).replace(call.id, "call_made_up"))
    assert final.message.content == llm_server.expected_text(
        seed=3, model=MODEL, temperature=None, messages=renamed
    )
    rainy = answered(MESSAGES, choice.message, ["Rain all week."])
    assert chat_text(client, seed=3) != final.message.content
    assert final.message.content != llm_server.expected_text(
        seed=3, model=MODEL, temperature=None, messages=rainy
    )


def test_parallel_tool_calls_one_per_tool(llm_server: LLMServer, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS)
    calls = completion.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert [c.function.arguments for c in calls] == [
        expected_arguments(llm_server, WEATHER),
        expected_arguments(llm_server, CLOCK),
    ]
    assert len({c.id for c in calls}) == 2

    # Both results answered: text.  parallel_tool_calls=False: only the first tool.
    both = answered(MESSAGES, completion.choices[0].message, ["rain", "noon"])
    text = client.chat.completions.create(model=MODEL, messages=both, tools=TOOLS).choices[0].message
    assert text.content == llm_server.expected_text(seed=None, model=MODEL, temperature=None, messages=both)
    single = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=TOOLS, parallel_tool_calls=False
    )
    assert [c.function.name for c in single.choices[0].message.tool_calls or []] == ["get_weather"]


def test_tool_choice_names_one_function_or_none(llm_server: LLMServer, client: openai.OpenAI) -> None:
    named = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    [call] = named.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"
    assert call.function.arguments == expected_arguments(llm_server, CLOCK)

    none = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice="none")
    assert none.choices[0].finish_reason == "stop"
    assert none.choices[0].message.content == chat_text(client)

    with pytest.raises(openai.BadRequestError, match="no function named 'get_mail'"):
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_mail"}},
        )


def test_tool_call_ids_are_fresh_but_arguments_deterministic(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    answers = [
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, seed=1) for _ in range(3)
    ]
    calls = [c for answer in answers for c in answer.choices[0].message.tool_calls or []]
    assert len({c.id for c in calls}) == 6
    assert all(CALL_ID.fullmatch(c.id) for c in calls)
    assert len({(c.function.name, c.function.arguments) for c in calls}) == 2


def test_variant_and_inputs_change_the_arguments(llm_server: LLMServer, client: openai.OpenAI) -> None:
    def arguments(**params: Any) -> str:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS[:1], **params)
        return (completion.choices[0].message.tool_calls or [])[0].function.arguments

    before = arguments(seed=5)
    assert arguments(seed=5) == before
    assert arguments(seed=6) != before
    assert arguments(seed=5, temperature=0.7) != before
    llm_server.variant = "backend-change"
    after = arguments(seed=5)
    assert after != before
    assert after == expected_arguments(llm_server, WEATHER, seed=5)


def test_streamed_tool_calls_on_the_wire_and_through_the_sdk_helper(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=TOOLS, stream=True, stream_options={"include_usage": True}
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    assert (deltas[0].role, deltas[0].content, deltas[0].tool_calls) == ("assistant", None, None)
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 2) + ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    pieces = [call for delta in deltas[1:-1] for call in delta.tool_calls or []]
    assert len(pieces) == len(deltas) - 2  # one call fragment per chunk
    headers = [p for p in pieces if p.id is not None]
    assert [(h.index, h.type, h.function.name, h.function.arguments) for h in headers] == [
        (0, "function", "get_weather", ""),
        (1, "function", "get_time", ""),
    ]
    for header in headers:
        assert header.function is not None and CALL_ID.fullmatch(header.id or "")
        fragments = [p.function.arguments for p in pieces if p.index == header.index and p.id is None]
        assert 2 <= len(fragments) <= 3
        function = WEATHER if header.index == 0 else CLOCK
        assert "".join(f or "" for f in fragments) == expected_arguments(llm_server, function)

    with chat_stream_helper(client)(model=MODEL, messages=MESSAGES, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls or []] == [
        ("get_weather", expected_arguments(llm_server, WEATHER)),
        ("get_time", expected_arguments(llm_server, CLOCK)),
    ]


def test_legacy_function_call_whole_and_streamed(llm_server: LLMServer, client: openai.OpenAI) -> None:
    functions: Any = [WEATHER, CLOCK]
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, functions=functions)
    choice = whole.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.content is None and choice.message.tool_calls is None
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"  # never parallel: the first one
    assert choice.message.function_call.arguments == expected_arguments(llm_server, WEATHER)

    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            functions=functions,
            function_call={"name": "get_time"},
            stream=True,
        )
    )
    calls = [c.choices[0].delta.function_call for c in chunks if c.choices[0].delta.function_call]
    assert (calls[0].name, calls[0].arguments) == ("get_time", "")
    assert "".join(call.arguments or "" for call in calls) == expected_arguments(llm_server, CLOCK)
    assert chunks[-1].choices[0].finish_reason == "function_call"

    result: list[Any] = [
        *MESSAGES,
        {"role": "assistant", "content": None, "function_call": {"name": "get_time", "arguments": "{}"}},
        {"role": "function", "name": "get_time", "content": "noon"},
    ]
    text = client.chat.completions.create(model=MODEL, messages=result, functions=functions)
    assert text.choices[0].message.content == llm_server.expected_text(
        seed=None, model=MODEL, temperature=None, messages=result
    )


# ------------------------------------------------------------------------------- structured output


class Ingredient(pydantic.BaseModel):
    name: str
    grams: float = pydantic.Field(gt=0, le=1000)


class Recipe(pydantic.BaseModel):
    title: str
    servings: int = pydantic.Field(ge=1, le=12)
    difficulty: Literal["easy", "hard"]
    vegetarian: bool
    ingredients: list[Ingredient]
    note: str | None
    updated: datetime.date


def test_json_schema_answers_validate(llm_server: LLMServer, client: openai.OpenAI) -> None:
    parsed = chat_parse_helper(client)(model=MODEL, messages=MESSAGES, response_format=Recipe, seed=2)
    recipe = parsed.choices[0].message.parsed
    assert isinstance(recipe, Recipe)
    assert recipe.difficulty == "easy" and recipe.vegetarian is True
    assert len(recipe.ingredients) == 1 and recipe.note is not None
    # The SDK sent a strict version of Recipe's schema (its $defs, refs and all) named "Recipe".
    sent = llm_server.requests[-1].body
    assert sent is not None and sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert "$defs" in schema
    content = parsed.choices[0].message.content
    assert content == llm_server.expected_json(
        schema=schema, name="Recipe", seed=2, model=MODEL, temperature=None, messages=MESSAGES
    )

    # Plain create with pydantic's own (non-strict) schema validates too, streamed or not.
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "Recipe", "schema": Recipe.model_json_schema()},
    }
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format=response_format)
    Recipe.model_validate_json(whole.choices[0].message.content or "")
    assert whole.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, response_format=response_format, stream=True
        )
    )
    contents = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(contents) > 2
    assert "".join(c or "" for c in contents) == whole.choices[0].message.content


def test_json_schema_changes_with_variant(llm_server: LLMServer, client: openai.OpenAI) -> None:
    parse = chat_parse_helper(client)
    before = parse(model=MODEL, messages=MESSAGES, response_format=Recipe).choices[0].message.parsed
    llm_server.variant = "backend-change"
    after = parse(model=MODEL, messages=MESSAGES, response_format=Recipe).choices[0].message.parsed
    assert isinstance(after, Recipe) and after != before


def test_json_object_answer(llm_server: LLMServer, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, seed=4, response_format={"type": "json_object"}
    )
    content = completion.choices[0].message.content or ""
    expected_text = llm_server.expected_text(seed=4, model=MODEL, temperature=None, messages=MESSAGES)
    assert json.loads(content) == {"answer": expected_text}
    assert content == llm_server.expected_json(
        schema=None, seed=4, model=MODEL, temperature=None, messages=MESSAGES
    )


def test_after_a_tool_round_the_answer_follows_the_response_format(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    parse = chat_parse_helper(client)
    strict: Any = [
        {"type": "function", "function": {**WEATHER, "strict": True}}
    ]  # parse() wants strict tools
    first = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=strict)
    messages = answered(MESSAGES, first.choices[0].message, ["sunny"])
    final = parse(model=MODEL, messages=messages, tools=strict, response_format=Recipe)
    assert not final.choices[0].message.tool_calls  # None, or [] from older SDKs' parse()
    assert isinstance(final.choices[0].message.parsed, Recipe)


# ------------------------------------------------------------------------ responses API: tools, stream

RESPONSES_WEATHER = {"type": "function", **WEATHER}
RESPONSES_CLOCK = {"type": "function", **CLOCK}


@needs_responses_api
def test_responses_function_calls_then_text(llm_server: LLMServer, client: openai.OpenAI) -> None:
    question = "Weather in Oslo?"
    first = client.responses.create(model=MODEL, input=question, tools=[RESPONSES_WEATHER, RESPONSES_CLOCK])
    assert first.output_text == ""
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == len(first.output) == 2
    for item, function in zip(calls, [WEATHER, CLOCK], strict=True):
        assert item.name == function["name"]
        assert re.fullmatch(r"fc_[0-9a-f]{32}", item.id or "")
        assert CALL_ID.fullmatch(item.call_id)
        assert item.status == "completed"
        assert item.arguments == expected_arguments(llm_server, function, messages=None, prompt=question)

    # Sent back as agents do (items and all), with the results: text from the whole input.
    history: list[Any] = [
        {"role": "user", "content": question},
        *[item.model_dump(exclude_none=True) for item in calls],
        *[{"type": "function_call_output", "call_id": item.call_id, "output": "cold"} for item in calls],
    ]
    second = client.responses.create(model=MODEL, input=history, tools=[RESPONSES_WEATHER, RESPONSES_CLOCK])
    assert [item.type for item in second.output] == ["message"]
    assert second.output_text == llm_server.expected_text(
        seed=None, model=MODEL, temperature=None, messages=history
    )

    named = client.responses.create(
        model=MODEL,
        input=question,
        tools=[RESPONSES_WEATHER, RESPONSES_CLOCK],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert [getattr(item, "name", None) for item in named.output] == ["get_time"]
    llm_server.variant = "backend-change"
    changed = client.responses.create(model=MODEL, input=question, tools=[RESPONSES_WEATHER])
    assert getattr(changed.output[0], "arguments", None) != calls[0].arguments


@needs_responses_api
def test_responses_structured_output(llm_server: LLMServer, client: openai.OpenAI) -> None:
    schema = Recipe.model_json_schema()
    text: Any = {"format": {"type": "json_schema", "name": "Recipe", "schema": schema}}
    response = client.responses.create(model=MODEL, input="A recipe, please", text=text)
    assert Recipe.model_validate_json(response.output_text)
    assert response.output_text == llm_server.expected_json(
        schema=schema, name="Recipe", seed=None, model=MODEL, temperature=None, prompt="A recipe, please"
    )


@needs_responses_api
def test_responses_stream_events_end_in_the_non_streamed_answer(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    whole = client.responses.create(model=MODEL, input="Tell me a story")
    events = list(client.responses.create(model=MODEL, input="Tell me a story", stream=True))

    types = [event.type for event in events]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 12,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert "".join(deltas) == whole.output_text
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == whole.output_text
    assert completed.response.status == "completed"
    assert events[0].type == "response.created" and events[0].response.status == "in_progress"
    assert {getattr(event, "response", completed.response).id for event in events} == {completed.response.id}

    # On the wire: an `event:` line before each `data:` line, and no [DONE].
    _, headers, body = raw_request(
        llm_server, "POST", "/v1/responses", {"model": MODEL, "input": "Tell me a story", "stream": True}
    )
    assert headers["content-type"].startswith("text/event-stream")
    blocks = body.decode().strip().split("\n\n")
    assert [block.split("\n")[0] for block in blocks] == [f"event: {t}" for t in types]
    assert b"[DONE]" not in body


@needs_responses_api
def test_responses_stream_of_function_calls(llm_server: LLMServer, client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(model=MODEL, input="Weather?", tools=[RESPONSES_WEATHER], stream=True)
    )
    added = [event for event in events if event.type == "response.output_item.added"]
    assert len(added) == 1 and added[0].item.type == "function_call"
    deltas = [event.delta for event in events if event.type == "response.function_call_arguments.delta"]
    expected = expected_arguments(llm_server, WEATHER, messages=None, prompt="Weather?")
    assert "".join(deltas) == expected and 2 <= len(deltas) <= 3
    done = [event for event in events if event.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == expected
    completed = events[-1]
    assert completed.type == "response.completed"
    assert [getattr(item, "arguments", None) for item in completed.response.output] == [expected]


@needs_responses_api
def test_cut_responses_stream_never_completes(llm_server: LLMServer, client: openai.OpenAI) -> None:
    llm_server.cut_next_stream(after_chunks=5)
    llm_server.cut_next_stream(after_chunks=1000)
    for expected_count in (5, 19):  # 19: every event but response.completed
        received: list[str] = []
        with pytest.raises(Exception) as caught:
            for event in client.responses.create(model=MODEL, input="Tell me a story", stream=True):
                received.append(event.type)
        assert is_connection_cut(caught.value), repr(caught.value)
        assert len(received) == expected_count
        assert "response.completed" not in received
    assert list(client.responses.create(model=MODEL, input="Tell me a story", stream=True))[-1].type == (
        "response.completed"
    )


# ------------------------------------------------------------------------------- the JSON generator


def test_generated_json_fits_pydantic_schemas_and_recursion_ends() -> None:
    class Node(pydantic.BaseModel):
        label: str
        children: list[Node] = []

    class Everything(pydantic.BaseModel):
        tree: Node
        ratio: float = pydantic.Field(gt=0, lt=1)
        count: int = pydantic.Field(ge=-3, le=-1)
        even: int = pydantic.Field(multiple_of=2)
        code: str = pydantic.Field(min_length=30, max_length=40)
        tags: list[str] = pydantic.Field(min_length=2)
        pair: tuple[int, bool]
        scores: dict[str, int]
        email: str = pydantic.Field(json_schema_extra={"format": "email"})
        uid: uuid.UUID
        when: datetime.datetime
        kind: Literal["a", "b"] | None

    Node.model_rebuild()
    values = [
        generate_json(Everything.model_json_schema(), text=f"apple river stone {n}", name="x")
        for n in range(5)
    ]
    for value in values:
        parsed = Everything.model_validate(value)
        assert parsed.kind == "a" and len(parsed.tags) == 2
    assert len({json.dumps(value) for value in values}) == 5  # the text changes the value
    # Strings are words of the text.
    word_schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert set(generate_json(word_schema, text="oak", name="f")["a"].split()) == {"oak"}
    with pytest.raises(ValueError, match="refers to itself"):
        generate_json({"$ref": "#"}, text="x")


def test_unsatisfiable_schema_is_a_400(client: openai.OpenAI) -> None:
    loop: Any = [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/$defs/missing"}}}]
    with pytest.raises(openai.BadRequestError, match="points nowhere"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=loop)


# ------------------------------------------------------------------------ embeddings and uploads


def test_embeddings_are_deterministic_in_both_encodings(llm_server: LLMServer, client: openai.OpenAI) -> None:
    model = "text-embedding-3-small"
    default = client.embeddings.create(model=model, input=["a pear", "a plum"])  # the SDK asks for base64
    floats = client.embeddings.create(model=model, input=["a pear", "a plum"], encoding_format="float")
    expected = [llm_server.expected_embedding(model=model, input=text) for text in ("a pear", "a plum")]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data] == expected
    assert expected[0] != expected[1]
    llm_server.variant = "other backend"
    assert client.embeddings.create(model=model, input="a pear").data[0].embedding != expected[0]


def test_transcription_depends_on_every_byte_of_the_file(
    llm_server: LLMServer, client: openai.OpenAI
) -> None:
    audio = bytes(range(256)) * 4  # every byte value, CR LF and the multipart dashes included
    answer = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert answer.text == llm_server.expected_transcription(model="whisper-1", audio=audio)
    as_text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="text"
    )
    assert as_text == answer.text
    other = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio[:-1] + b"\x00"))
    assert other.text != answer.text


def test_file_uploads_and_image_edits_answer_from_the_upload(client: openai.OpenAI) -> None:
    first = client.files.create(file=("d.jsonl", b'{"a": 1}\n'), purpose="batch")
    again = client.files.create(file=("d.jsonl", b'{"a": 1}\n'), purpose="batch")
    other = client.files.create(file=("d.jsonl", b'{"a": 2}\n'), purpose="batch")
    assert first == again and first.id != other.id
    assert (first.bytes, first.filename, first.purpose) == (9, "d.jsonl", "batch")
    edit = client.images.edit(image=("i.png", b"\x89PNG\r\n\x00\xff"), prompt="a cat", n=2)
    same = client.images.edit(image=("i.png", b"\x89PNG\r\n\x00\xff"), prompt="a cat", n=2)
    assert edit.data is not None and same.data is not None
    images = [image.b64_json for image in edit.data]
    assert images == [image.b64_json for image in same.data] and len(set(images)) == 2
