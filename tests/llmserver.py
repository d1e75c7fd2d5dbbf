"""A deterministic, controllable OpenAI-compatible HTTP server for the project's own tests.

The plugin under test talks to OpenAI through the real ``openai`` SDK, so its tests need something that
speaks the real wire protocol (HTTP/1.1, JSON, gzip, server-sent events) but answers predictably and can
be made to misbehave on demand.  Mocking the SDK would test our assumptions about the SDK instead of the
SDK; this server lets the tests run the SDK for real against 127.0.0.1.

Everything the server says is a pure function of the request (see :func:`generate_text`), so a test can
compute the expected answer itself with :meth:`LLMServer.expected_text` without trusting the plugin.

Agent and tool libraries get what they need from the server too, all derived from that same text, so
that every input and a change of ``variant`` (a "backend change") change them as well:

- tool calls: with function ``tools`` (or the legacy ``functions``), and ``tool_choice`` not "none",
  the answer is a call of the named function, else of the first, else (two or more tools and
  ``parallel_tool_calls`` not false) one call of each, until the conversation carries the results (its
  last message has role "tool", or its last Responses API input item is a ``function_call_output``);
  then it is text again, generated from the whole conversation;
- arguments and JSON answers (``response_format`` / the Responses API's ``text.format`` of type
  ``json_schema``) are values of the given JSON schema (:func:`generate_json`); ``json_object`` answers
  ``{"answer": <text>}``; tests compute them with :meth:`LLMServer.expected_tool_arguments` and
  :meth:`LLMServer.expected_json`;
- tool call ids (``call_<24 hex>``) and Responses API ids (``resp_``, ``msg_``, ``fc_``) are fresh on
  every answer, like OpenAI's, and do not affect any text (see :func:`generate_text`); the Responses API
  takes ``previous_response_id`` (echoed, not looked up: the answer depends on ``input`` only) and
  output items passed back in ``input``;
- ``n`` (chat and legacy completions) answers that many choices; choice ``k``'s text is
  :func:`generate_text` with ``choice=k`` (choice 0 is the answer without ``n``), and a stream
  interleaves the choices' chunks, each under its ``index``;
- ``sample_unseeded`` (off by default): the Responses API, which takes no seed, answers like a sampling
  model: each of its answers mixes in how many Responses API answers this knob has given so far (from 0,
  kept across ``stop()``/``start()``, cleared by :meth:`LLMServer.reset`), so identical requests get
  different answers; ``expected_text(..., sample=k)`` computes the k-th;
- chat and legacy completions stream as ``data:`` chunks ending with ``data: [DONE]``; the Responses API
  streams named events (``event:`` + ``data:``) ending with ``response.completed``.

Endpoints that are not completions answer deterministically from the request too (and do not stream):

- ``/v1/embeddings``: one vector of ``dimensions`` (default 8) values per input, derived from the model,
  the input and ``variant`` (:meth:`LLMServer.expected_embedding`), sent as floats or as base64 float32
  (``encoding_format``, which the SDK sets to base64 by default);
- uploads, read as ``multipart/form-data``: ``/v1/audio/transcriptions`` answers text generated from the
  model and the file's bytes (:meth:`LLMServer.expected_transcription`; ``response_format`` json or
  text); ``/v1/files`` answers a file object whose id is a digest of the file, its name and purpose;
  ``/v1/images/edits`` answers one ``b64_json`` image per ``n``, a digest of the image, prompt and index.

Lifecycle: ``start()`` binds and serves in a daemon thread; ``stop()`` closes the listening socket and every
open client connection, so afterwards connections are refused.  ``start()`` may be called again after
``stop()`` (pass the old ``port`` to come back on the same port).  Stopping and restarting KEEPS the request
log and every knob; only :meth:`LLMServer.reset` clears them.

Timing, for tests of concurrency: ``latency`` (a knob) makes every successful completion answer take
that long (a whole answer waits it before it is sent; a stream spreads it over its events, like tokens
being generated), and ``meet_next`` holds the next requests until they are all in at once.  Every
request is numbered on one counter with the moment its answer was finished (``arrived`` /
``finished``), so a test can tell which requests the server had in hand together
(:meth:`ReceivedRequest.overlaps`) from the order of events alone, never from a stopwatch.

Injected faults (``fail_next``, ``hang_next``, ``cut_next_stream``) are queues: each call appends ``count``
entries, and each matching request consumes one entry, in the order the calls were made.  A single request
may consume a hang and a failure at once: it then sleeps first and fails afterwards.

Only the standard library is used, except pytest for the ``llm_server`` fixture.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import gzip as gzip_module
import hashlib
import http.server
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest

__all__ = [
    "DEFAULT_FINGERPRINT",
    "DEFAULT_MODELS",
    "FINGERPRINT_STYLES",
    "FRESH_REQUEST_ID",
    "VOCABULARY",
    "LLMServer",
    "ReceivedRequest",
    "default_response_headers",
    "embedding_for",
    "generate_arguments",
    "generate_json",
    "generate_text",
    "json_text",
    "llm_server",
    "running_server",
    "transcription_for",
    "value_for_schema",
]

JSONObject = dict[str, Any]

DEFAULT_FINGERPRINT = "fp_test_1"

# The fingerprint conventions of the servers the plugin has to cope with; see ``_stamp_chunks``.
FINGERPRINT_STYLES = ("every", "last", "first_null", "absent", "constant", "disagree")

# Ollama reports this fixed value whatever model is loaded, so it carries no information.
OLLAMA_FINGERPRINT = "fp_ollama"

# A header value equal to this placeholder is replaced by a fresh ``req_<uuid>`` on every response,
# because real servers send a new x-request-id each time (recordings must not depend on it).
FRESH_REQUEST_ID = "<fresh-request-id>"

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-3.5-turbo-instruct", "llmserver-test")

# Without max_tokens the answer has this many words; with it, at most MAX_WORDS words.
DEFAULT_WORDS = 12
MAX_WORDS = 64
# A newline instead of a space starts every LINE_WORDS-th word so answers span several lines, which makes
# snapshot diffs of changed outputs show up as line diffs.
LINE_WORDS = 5

# stop() never takes (much) longer than this, even with handlers stuck on clients.
STOP_GRACE_SECONDS = 0.8

COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/files", "/v1/images/edits")
KNOWN_PATHS = (*COMPLETION_PATHS, *UPLOAD_PATHS, "/v1/embeddings", "/v1/models")
# Embeddings have this many values unless the request asks for ``dimensions``.
DEFAULT_DIMENSIONS = 8
# The ``created`` / ``created_at`` of upload answers: fixed, as everything else the server makes up.
CREATED = 1_700_000_000

# Plain, lower-case, unambiguous English words: outputs stay readable in snapshots and diffs.
VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys(
        """
    apple river stone cloud garden window bridge candle forest market letter silver winter summer
    morning evening island valley meadow harbor lantern pencil mirror ladder basket button kettle
    pocket rabbit turtle falcon dolphin tiger eagle horse sparrow otter badger beaver camel donkey
    orange lemon cherry peach melon grape carrot potato onion pepper bread butter cheese honey
    coffee tea water milk sugar salt paper glass metal wood cotton wool leather marble copper
    iron gold green blue yellow purple brown white black gray quiet gentle bright early late
    quick slow warm cold soft loud happy calm brave clever simple steady little large ancient
    modern hidden open round square narrow wide deep shallow distant nearby walk run jump swim
    climb read write sing paint build carry follow gather listen watch travel wander whisper
    laugh dream remember forget discover explore borrow return open close begin finish answer
    question story song poem music picture journey travel map compass road path street corner
    village city country mountain ocean desert field farm school library museum station airport
    kitchen table chair door floor roof wall clock calendar minute hour today tomorrow yesterday
    always never often sometimes again together alone inside outside above below beside between
    under over around through across toward within without
    """.split()
    )
)


def default_response_headers() -> dict[str, str]:
    """Headers a real OpenAI response carries that recordings must scrub or ignore.

    The sentinel values are deliberately easy to grep for in cassettes and snapshots.
    """
    return {
        "openai-organization": "org-server-sentinel",
        "openai-project": "proj_server_sentinel",
        "set-cookie": "__cf_bm=server-cookie-sentinel; path=/",
        "x-request-id": FRESH_REQUEST_ID,
        "openai-processing-ms": "12",
    }


def _sampled(variant: str, sample: int) -> str:
    """The variant of the ``sample``-th answer under ``sample_unseeded``."""
    return f"{variant}#sample{sample}"


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def generate_text(
    *,
    seed: int | None,
    model: str,
    temperature: float | None,
    messages: Sequence[Any] | None = None,
    prompt: object = None,
    max_tokens: int | None = None,
    variant: str = "",
    choice: int = 0,
) -> str:
    """The answer for these inputs: a pure function, shared by the handler and ``expected_text``.

    ``choice`` is the choice's index in an answer of ``n`` choices; choice 0 is the answer of a
    request without ``n``.

    Temperature is normalised to float so that ``0`` and ``0.0`` (which the SDK sends verbatim as
    different JSON) give the same answer, as they would on a real model.  Ids in the messages (tool call
    ids, which this server makes up afresh on every answer, and Responses API item ids the client sends
    back) are replaced by their order of first appearance: a model's answer does not depend on them, and
    the text after a tool round must be the same on every run.
    """
    inputs: dict[str, Any] = {
        "seed": seed,
        "temperature": None if temperature is None else float(temperature),
        "model": model,
        "messages": None if messages is None else _stable_ids(list(messages), {}),
        "prompt": prompt,
        "max_tokens": max_tokens,
        "variant": variant,
    }
    if choice:
        inputs["choice"] = choice  # absent for choice 0, so answers without n stay what they were
    key = _canonical_json(inputs)
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big"))
    n_words = _word_count(max_tokens)
    parts: list[str] = []
    for index in range(n_words):
        if index > 0:
            parts.append("\n" if index % LINE_WORDS == 0 else " ")
        parts.append(rng.choice(VOCABULARY))
    return "".join(parts)


# Keys whose string values are ids: tool call ids (chat ``tool_calls[].id`` and ``tool_call_id``), and the
# Responses API's ``call_id`` and item ``id`` values that clients send back in ``input``.
_ID_KEYS = frozenset({"id", "call_id", "tool_call_id"})


def _stable_ids(value: object, ids: dict[str, str]) -> Any:
    """``value`` with every id replaced by ``<id N>``, N counting distinct ids in order of appearance.

    Keys are visited in sorted order, so the numbering does not depend on how a dict was written.
    """
    if isinstance(value, (list, tuple)):
        return [_stable_ids(item, ids) for item in value]
    if isinstance(value, Mapping):
        stable: dict[str, Any] = {}
        for key in sorted(value):
            item = value[key]
            if key in _ID_KEYS and isinstance(item, str):
                stable[key] = ids.setdefault(item, f"<id {len(ids) + 1}>")
            else:
                stable[key] = _stable_ids(item, ids)
        return stable
    return value


def _word_count(max_tokens: int | None) -> int:
    return DEFAULT_WORDS if max_tokens is None else min(max_tokens, MAX_WORDS)


def _finish_reason(max_tokens: int | None) -> str:
    # "length" when the answer was cut by max_tokens, like a real model stopped mid-thought.
    return "length" if max_tokens is not None and max_tokens <= MAX_WORDS else "stop"


def _split_words_keeping_separators(text: str) -> list[str]:
    """Split into one piece per word, each with the whitespace before it, so ''.join(pieces) == text."""
    pieces: list[str] = []
    current = ""
    for char in text:
        if char in " \n" and current.strip():
            pieces.append(current)
            current = ""
        current += char
    if current:
        pieces.append(current)
    return pieces


def _count_words(value: object) -> int:
    """Whitespace-separated words in a prompt, a message list or content parts (usage token counts)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        # Message dicts carry text in "content"; content parts and Responses input parts in "text";
        # Responses function_call_output items in "output".
        return sum(_count_words(value[key]) for key in ("content", "text", "output") if key in value)
    return 0


# ----------------------------------------------------------------------- tool arguments and JSON answers

# Below this depth of nesting a generated value takes the smallest valid form (optional properties left
# out, arrays empty where allowed, null where allowed), so recursive models (a tree of nodes) terminate.
SHALLOW_DEPTH = 8
# A schema that still needs values this deep cannot be satisfied finitely (or refers to itself in a loop).
MAX_SCHEMA_DEPTH = 64

# Values for string formats that pydantic emits and validates (datetime, date, EmailStr, AnyUrl, UUID ...).
_STRING_FORMATS = ("date-time", "date", "time", "email", "uri", "url", "uuid", "duration")


def json_text(value: object) -> str:
    """JSON as this server writes tool arguments and JSON answers (``json.dumps``' separators)."""
    return json.dumps(value, ensure_ascii=False)


def generate_json(schema: object, *, text: str, name: str = "") -> Any:
    """A value valid for the JSON ``schema``: a pure function of (schema, ``text``, ``name``).

    ``text`` is what :func:`generate_text` answers for the request, so everything that changes the text
    (seed, messages, temperature, model, max_tokens, variant) changes the value too; ``name`` (the
    function's, or the json_schema's) keeps two tools of one request from getting the same values.
    Strings are words of ``text`` (or fit their ``format``), integers and numbers are drawn within their
    bounds, booleans are true, ``enum`` gives its first value and ``const`` its value, arrays have one
    item (``minItems`` if more), objects have every property in the schema's order (``required`` ones
    always), ``$ref`` into ``$defs``/``definitions`` is followed, ``anyOf``/``oneOf`` take the first branch
    that is not null, ``allOf`` is merged.  Raises ValueError for a schema that cannot be satisfied.
    """
    rng = random.Random(_digest({"text": text, "name": name}))
    return _SchemaValues(schema, rng, text.split() or ["empty"]).value(schema, 0)


def generate_arguments(
    parameters: object,
    *,
    name: str,
    seed: int | None,
    model: str,
    temperature: float | None,
    messages: Sequence[Any] | None = None,
    prompt: object = None,
    max_tokens: int | None = None,
    variant: str = "",
) -> str:
    """The ``arguments`` JSON text of a call to function ``name`` whose schema is ``parameters``.

    The same inputs as :func:`generate_text`; a missing ``parameters`` means an object with no properties.
    Also what a ``json_schema`` answer is, with the schema as ``parameters`` and its name as ``name``.
    """
    text = generate_text(
        seed=seed,
        model=model,
        temperature=temperature,
        messages=messages,
        prompt=prompt,
        max_tokens=max_tokens,
        variant=variant,
    )
    return json_text(generate_json(_parameters_or_empty(parameters), text=text, name=name))


def value_for_schema(schema: Any, words: list[str], defs: Mapping[str, Any] | None = None) -> Any:
    """:func:`generate_json` for ``words`` as the text (``defs``: where ``$ref`` values point).

    The first version of this server's schema values; kept for its callers.
    """
    if defs is not None and isinstance(schema, Mapping):
        schema = {**schema, "$defs": defs, "definitions": defs}
    return generate_json(schema, text=" ".join(words))


def _parameters_or_empty(parameters: object) -> object:
    return {"type": "object", "properties": {}} if parameters is None else parameters


def _digest(value: object) -> int:
    return int.from_bytes(hashlib.sha256(_canonical_json(value).encode("utf-8")).digest(), "big")


def _is_null_schema(schema: object) -> bool:
    if not isinstance(schema, Mapping):
        return False
    return schema.get("type") == "null" or schema.get("enum") == [None] or schema.get("const", ...) is None


class _SchemaValues:
    """Walks one schema, drawing every choice from one random stream in document order."""

    def __init__(self, root: object, rng: random.Random, words: list[str]) -> None:
        self.root = root
        self.rng = rng
        self.words = words

    def value(self, schema: object, depth: int) -> Any:
        if depth > MAX_SCHEMA_DEPTH:
            raise ValueError("the JSON schema nests too deeply (or refers to itself) to generate a value")
        if schema is True or schema == {}:
            return self.string({})
        if not isinstance(schema, Mapping):
            raise ValueError(f"not a JSON schema: {schema!r}")
        shallow = depth > SHALLOW_DEPTH
        if isinstance(schema.get("$ref"), str):
            siblings = {key: item for key, item in schema.items() if key != "$ref"}
            return self.value({**self.resolve(schema["$ref"]), **siblings}, depth + 1)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][0]
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                others = [branch for branch in branches if not _is_null_schema(branch)]
                if not others or (shallow and len(others) < len(branches)):
                    return None
                return self.value(others[0], depth + 1)
        if isinstance(schema.get("allOf"), list):
            return self.value(self.merge_all_of(schema), depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [item for item in kind if item != "null"]
            if not kinds or (shallow and "null" in kind):
                return None
            kind = kinds[0]
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema or "required" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, depth, shallow)
        if kind == "array":
            return self.array(schema, depth, shallow)
        if kind == "string":
            return self.string(schema)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        raise ValueError(f"unknown JSON schema type {kind!r}")

    def resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref values are supported, not {ref!r}")
        target: Any = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ValueError(f"$ref {ref!r} points nowhere in the schema")
            target = target[part]
        if not isinstance(target, Mapping):
            raise ValueError(f"$ref {ref!r} is not a schema")
        return target

    def merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {key: item for key, item in schema.items() if key != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, Mapping) and isinstance(part.get("$ref"), str):
                part = {**self.resolve(part["$ref"]), **{k: v for k, v in part.items() if k != "$ref"}}
            if not isinstance(part, Mapping):
                continue
            for key, item in part.items():
                if key == "properties" and isinstance(item, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **item}
                elif key == "required" and isinstance(item, list):
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *item]))
                else:
                    merged.setdefault(key, item)
        return merged

    def object(self, schema: Mapping[str, Any], depth: int, shallow: bool) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = [key for key in required if isinstance(key, str)] if isinstance(required, list) else []
        result: dict[str, Any] = {}
        for key, subschema in properties.items():
            if shallow and key not in required:
                continue
            result[key] = self.value(subschema, depth + 1)
        for key in required:
            if key not in result:
                result[key] = self.string({})
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, Mapping) and not shallow:
            result[self.rng.choice(self.words)] = self.value(extra, depth + 1)
        return result

    def array(self, schema: Mapping[str, Any], depth: int, shallow: bool) -> list[Any]:
        prefix = schema.get("prefixItems")
        result = [self.value(item, depth + 1) for item in prefix] if isinstance(prefix, list) else []
        items = schema.get("items")
        if items is False or (isinstance(prefix, list) and items is None):
            return result
        minimum = schema.get("minItems")
        count = max(minimum if isinstance(minimum, int) else 0, 0 if shallow else 1) - len(result)
        maximum = schema.get("maxItems")
        if isinstance(maximum, int):
            count = min(count, maximum - len(result))
        item_schema = items if items is not None else {}
        result += [self.value(item_schema, depth + 1) for _ in range(max(count, 0))]
        return result

    def string(self, schema: Mapping[str, Any]) -> str:
        rng = self.rng
        string_format = schema.get("format")
        if string_format in _STRING_FORMATS:
            month, day, hour, minute = (
                rng.randint(1, 12),
                rng.randint(1, 28),
                rng.randint(0, 23),
                rng.randint(0, 59),
            )
            word = rng.choice(self.words)
            return {
                "date-time": f"2024-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00Z",
                "date": f"2024-{month:02d}-{day:02d}",
                "time": f"{hour:02d}:{minute:02d}:00",
                "email": f"{word}@example.com",
                "uri": f"https://example.com/{word}",
                "url": f"https://example.com/{word}",
                "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "duration": f"PT{minute + 1}M",
            }[string_format]
        start = rng.randrange(len(self.words))
        count = rng.randint(1, 3)
        value = " ".join(self.words[(start + offset) % len(self.words)] for offset in range(count))
        min_length = schema.get("minLength")
        while isinstance(min_length, int) and len(value) < min_length:
            value += " " + rng.choice(self.words)
        max_length = schema.get("maxLength")
        if isinstance(max_length, int) and len(value) > max_length:
            value = value[:max_length]
        return value

    def integer(self, schema: Mapping[str, Any]) -> int:
        low, high = _bounds(schema, step=1)
        low_int = math.ceil(low) if low is not None else None
        high_int = math.floor(high) if high is not None else None
        if low_int is None:
            low_int = 1 if high_int is None or high_int >= 100 else high_int - 99
        if high_int is None or high_int < low_int:
            high_int = low_int + 99 if high_int is None else low_int
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple > 0:
            first, last = -(-low_int // multiple), high_int // multiple
            if first <= last:
                return self.rng.randint(first, last) * multiple
        return self.rng.randint(low_int, high_int)

    def number(self, schema: Mapping[str, Any]) -> float:
        # Hundredths, drawn like integers: readable values that survive a JSON round trip exactly.
        low, high = _bounds(schema, step=0.01)
        low_cents = math.ceil(low * 100) if low is not None else None
        high_cents = math.floor(high * 100) if high is not None else None
        if low_cents is None:
            low_cents = 100 if high_cents is None or high_cents >= 10_000 else high_cents - 9_900
        if high_cents is None or high_cents < low_cents:
            high_cents = low_cents + 9_900 if high_cents is None else low_cents
        return self.rng.randint(low_cents, high_cents) / 100


def _bounds(schema: Mapping[str, Any], *, step: float) -> tuple[float | None, float | None]:
    """The inclusive range of a number schema (exclusive bounds moved inwards by ``step``)."""

    def number(key: str) -> float | None:
        value = schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    low, high = number("minimum"), number("maximum")
    exclusive_low, exclusive_high = number("exclusiveMinimum"), number("exclusiveMaximum")
    if exclusive_low is not None:
        low = exclusive_low + step if low is None else max(low, exclusive_low + step)
    if exclusive_high is not None:
        high = exclusive_high - step if high is None else min(high, exclusive_high - step)
    return low, high


@dataclasses.dataclass
class ReceivedRequest:
    """One request as it arrived, recorded before the server answers (also for failed/injected ones)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: JSONObject | None  # parsed JSON object, or None when absent or not a JSON object
    raw_body: bytes
    query: str  # the raw query string, without "?"
    #: When the request had arrived, and when the server began sending the last part of its answer
    #: (``None``: it never did), both on one counter of the server's events: a client cannot have
    #: read an answer before it was ``finished``, so these orders are facts, not races.
    arrived: int = 0
    finished: int | None = None

    def overlaps(self, other: ReceivedRequest) -> bool:
        """Whether the server had both requests in hand at once (each arrived before the other was answered)."""

        def before_end(a: ReceivedRequest, b: ReceivedRequest) -> bool:
            return b.finished is None or a.arrived < b.finished

        return before_end(self, other) and before_end(other, self)


@dataclasses.dataclass(frozen=True)
class _Failure:
    status: int
    message: str
    retry_after: float | None


@dataclasses.dataclass(frozen=True)
class _RawAnswer:
    status: int
    body: bytes
    content_type: str


@dataclasses.dataclass(frozen=True)
class _ChatChoice:
    """One choice of a chat answer: its message, how it ended, and what a stream sends of it."""

    message: JSONObject
    finish: str
    completion_tokens: int
    content_pieces: list[str]


@dataclasses.dataclass(frozen=True)
class _Settings:
    """A consistent snapshot of the knobs for one request, taken under the lock.

    Tests flip knobs while requests are in flight; a snapshot keeps each single answer coherent.
    """

    fingerprint: str | None
    fingerprint_style: str
    variant: str
    model_override: str | None
    gzip: bool
    edit_content: Callable[[str], str] | None
    response_headers: dict[str, str]
    latency: float
    sample_unseeded: bool = False


class _AbortConnection(Exception):
    """Raised inside a handler to drop the connection without (finishing) an answer."""


class _HTTPServer(http.server.ThreadingHTTPServer):
    # Daemon threads and no joining on close: a handler stuck on a client must never block stop().
    daemon_threads = True
    block_on_close = False
    # SO_REUSEADDR so that a restart on the same port works while old connections sit in TIME_WAIT.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: LLMServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, cut streams, stop()) are expected here; other errors are already
        # answered with a 500 by the handler, so the default traceback print to stderr is pure noise.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    # HTTP/1.1 so the SDK's connection pool gets keep-alive and chunked streaming, as with the real API.
    protocol_version = "HTTP/1.1"
    # Stream chunks are tiny writes; Nagle + delayed ACKs would add latency per chunk.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.owner._track_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.owner._untrack_connection(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent: tests that check stderr must not see access logs

    # Every method goes through one dispatcher so that unknown methods are logged and answered too.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            request = self._read_request()
            owner._record(request)
            owner._answer(self, request)
        except (_AbortConnection, OSError):
            # Client hung up, timed out, or we were told to cut: drop quietly, no traceback on stderr.
            self._drop_connection()
        except Exception as error:  # a bug in this server: tell the client instead of hanging it
            self._try_send_bug_report(error)

    def _read_request(self) -> ReceivedRequest:
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            lowered = name.lower()
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        raw_body = self._read_body(headers)
        body: JSONObject | None = None
        if raw_body:
            try:
                parsed = json.loads(raw_body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed
        return ReceivedRequest(
            method=self.command, path=path, headers=headers, body=body, raw_body=raw_body, query=query
        )

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    raise _AbortConnection
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # skip trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(headers.get("content-length", "0") or "0")
        return self.rfile.read(length) if length > 0 else b""

    def _drop_connection(self) -> None:
        self.close_connection = True
        _shutdown_quietly(self.connection)

    def _try_send_bug_report(self, error: Exception) -> None:
        try:
            body = _error_body(500, f"llmserver bug: {error!r}", error_type="llmserver_bug")
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True


def _error_type(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        status, "invalid_request_error"
    )


def _error_body(status: int, message: str, *, error_type: str | None = None) -> bytes:
    error = {"message": message, "type": error_type or _error_type(status), "param": None, "code": None}
    return json.dumps({"error": error}).encode("utf-8")


class _BadRequest(Exception):
    """The request body is not what the endpoint needs; answered with a 400 like the real API."""


class LLMServer:
    """A deterministic OpenAI-compatible server on 127.0.0.1 whose behaviour tests can steer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified whenever a handler finishes, so stop() can wait for in-flight handlers.
        self._handlers_done = threading.Condition(self._lock)
        # Set on stop() so handlers sleeping for hang_next wake up at once and stop() stays fast.
        self._stopping = threading.Event()
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port: int = 0
        self.requests: list[ReceivedRequest] = []
        self._failures: collections.deque[_Failure] = collections.deque()
        self._hangs: collections.deque[float] = collections.deque()
        self._cuts: collections.deque[int] = collections.deque()
        self._stalls: collections.deque[tuple[int, float]] = collections.deque()
        self._raw: collections.deque[_RawAnswer] = collections.deque()
        self._meetings: collections.deque[threading.Barrier] = collections.deque()
        # Every barrier meet_next made, so stop() can wake the requests still waiting at one.
        self._barriers: list[threading.Barrier] = []
        # One counter for arrivals and finished answers (ReceivedRequest.arrived / .finished).
        self._events = itertools.count(1)
        self._set_default_knobs()

    def _set_default_knobs(self) -> None:
        self.fingerprint: str | None = DEFAULT_FINGERPRINT
        self.fingerprint_style: str = "every"
        self.variant: str = ""
        # Rewrites the text (or JSON) content of every chat, completion and Responses answer, tool calls
        # aside: "the same request, another output" of a chosen shape (one word, JSON laid out anew).
        self.edit_content: Callable[[str], str] | None = None
        self.model_override: str | None = None
        self.gzip: bool = True
        self.response_headers: dict[str, str] = default_response_headers()
        self.sample_unseeded: bool = False
        self._samples = 0
        #: Seconds every successful completion answer takes (0: at once). A whole answer waits them
        #: before it is sent; a stream sends its headers at once and spreads them over its events.
        self.latency: float = 0.0

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._http is not None

    def start(self, port: int = 0) -> None:
        """Bind 127.0.0.1:port (0 = a free port) and serve in a daemon thread."""
        if self._http is not None:
            raise RuntimeError(f"LLMServer is already running on port {self.port}")
        self._stopping.clear()
        self._http = _HTTPServer(("127.0.0.1", port), self)
        self.port = self._http.server_address[1]
        # A short poll interval keeps stop() (which waits for the serve loop to notice) well under 1 s.
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"llmserver-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the listening socket and all client connections; idempotent.

        Returns within about a second: sleeping ``hang_next`` handlers are woken, and handler threads
        are given until then to finish, so that normally none is left to touch the log afterwards.
        """
        http_server, thread = self._http, self._thread
        if http_server is None:
            return
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        self._http = self._thread = None
        self._stopping.set()
        with self._lock:
            barriers = list(self._barriers)
        for barrier in barriers:
            barrier.abort()  # requests waiting for company answer now
        http_server.shutdown()
        http_server.server_close()
        # Keep-alive connections in the SDK's pool would otherwise still reach the old handler threads,
        # so a "stopped" server would keep answering; shutting them down makes stop() really stop.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _shutdown_quietly(connection)
        if thread is not None:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._handlers_done:
            self._handlers_done.wait_for(
                lambda: not self._connections, timeout=max(0.0, deadline - time.monotonic())
            )

    @property
    def active_handlers(self) -> int:
        """Client connections currently being served (0 after a clean stop())."""
        with self._lock:
            return len(self._connections)

    def __enter__(self) -> LLMServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
            stopping = self._stopping.is_set()
        if stopping:
            # Accepted just before stop() closed the listener: don't let it wait on keep-alive forever.
            _shutdown_quietly(connection)

    def _untrack_connection(self, connection: socket.socket) -> None:
        with self._handlers_done:
            self._connections.discard(connection)
            self._handlers_done.notify_all()

    # ------------------------------------------------------------------------------- test controls

    def fail_next(
        self,
        status: int = 500,
        count: int = 1,
        message: str = "injected failure",
        retry_after: float | None = 0,
    ) -> None:
        """The next ``count`` completion requests get HTTP ``status`` with an OpenAI-style error body.

        ``retry_after`` is sent as ``retry-after`` and, in milliseconds, as ``retry-after-ms`` (at least 1):
        the SDK ignores a zero delay and falls back to its ~0.5 s exponential backoff, so the 1 ms
        ``retry-after-ms`` is what actually makes its retries instant.  ``None`` sends neither header.
        """
        with self._lock:
            self._failures.extend([_Failure(status, message, retry_after)] * count)

    def hang_next(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` completion requests sleep ``seconds`` before answering (woken by stop())."""
        with self._lock:
            self._hangs.extend([seconds] * count)

    def meet_next(self, count: int, timeout: float = 10.0) -> None:
        """The next ``count`` completion requests wait until all ``count`` have arrived, then answer.

        Requests sent together are then all in the server at once, whatever the machine's load;
        requests sent one at a time wait ``timeout`` seconds (or until stop()) and answer alone.
        """
        barrier = threading.Barrier(count, timeout=timeout)
        with self._lock:
            self._barriers.append(barrier)
            self._meetings.extend([barrier] * count)

    def cut_next_stream(self, after_chunks: int = 1, count: int = 1) -> None:
        """The next ``count`` streamed answers drop the connection after ``after_chunks`` data events.

        A cut stream never sends its last event (chat's ``[DONE]``, the Responses API's
        ``response.completed``), however large ``after_chunks`` is.
        """
        with self._lock:
            self._cuts.extend([after_chunks] * count)

    def stall_next_stream(self, after_chunks: int, seconds: float, count: int = 1) -> None:
        """The next ``count`` streamed answers pause ``seconds`` after ``after_chunks`` events (woken by stop()).

        For a client that gives up on a slow stream (``asyncio.wait_for`` around reading it).
        """
        with self._lock:
            self._stalls.extend([(after_chunks, seconds)] * count)

    def serve_next_raw(
        self, body: bytes | str, *, status: int = 200, content_type: str = "application/json", count: int = 1
    ) -> None:
        """The next ``count`` completion requests get exactly these bytes, never compressed.

        For answers a real server or a proxy in between can send that are not the API's: an HTML page
        with status 200, an error object with status 200, events that are not JSON, a stream that ends
        without ``[DONE]``, bytes that are not UTF-8.
        """
        raw = body.encode("utf-8", errors="surrogatepass") if isinstance(body, str) else body
        with self._lock:
            self._raw.extend([_RawAnswer(status, raw, content_type)] * count)

    def reset(self) -> None:
        """Clear the request log and pending injections and restore every knob's default."""
        with self._lock:
            self.requests.clear()
            self._raw.clear()
            self._failures.clear()
            self._hangs.clear()
            self._cuts.clear()
            self._stalls.clear()
            self._meetings.clear()
            self._barriers.clear()
            self._set_default_knobs()

    def expected_text(
        self,
        *,
        seed: int | None,
        model: str,
        temperature: float | None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        max_tokens: int | None = None,
        choice: int = 0,
        sample: int | None = None,
    ) -> str:
        """The text the server answers for these inputs under the current ``variant``.

        Chat: pass ``messages``.  Legacy completions: pass ``prompt``.  Responses API: pass
        ``seed=None`` and the string ``input`` as ``prompt`` (or a list ``input`` as ``messages``),
        ``max_output_tokens`` as ``max_tokens``.  ``choice``: the index of a choice of an ``n > 1``
        answer.  ``sample``: under ``sample_unseeded``, the Responses API answer's number (from 0).
        """
        return generate_text(
            seed=seed,
            model=model,
            temperature=temperature,
            # Plain dicts, so any Mapping (e.g. the SDK's TypedDicts) hashes exactly like the parsed JSON.
            messages=None if messages is None else [dict(message) for message in messages],
            prompt=prompt,
            max_tokens=max_tokens,
            variant=self.variant if sample is None else _sampled(self.variant, sample),
            choice=choice,
        )

    def expected_embedding(
        self, *, model: str, input: object, dimensions: int = DEFAULT_DIMENSIONS
    ) -> list[float]:
        """The embedding the server answers for one ``input`` under the current ``variant``."""
        return embedding_for(model=model, input=input, dimensions=dimensions, variant=self.variant)

    def expected_transcription(self, *, model: str, audio: bytes) -> str:
        """The transcription the server answers for ``audio`` under the current ``variant``."""
        return transcription_for(model=model, audio=audio, variant=self.variant)

    def expected_tool_arguments(
        self,
        *,
        name: str,
        parameters: Mapping[str, Any] | None,
        seed: int | None,
        model: str,
        temperature: float | None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The ``arguments`` JSON text the server sends for a call to function ``name`` (under the
        current ``variant``), for a request with these inputs (as for :meth:`expected_text`).

        ``parameters`` is the function's JSON schema as sent in the request (``None`` when it had
        none).  The same for chat ``tool_calls``, a legacy ``function_call`` and a Responses API
        ``function_call`` item; a call's arguments do not depend on which other tools were called.
        """
        return generate_arguments(
            parameters,
            name=name,
            seed=seed,
            model=model,
            temperature=temperature,
            messages=None if messages is None else [dict(message) for message in messages],
            prompt=prompt,
            max_tokens=max_tokens,
            variant=self.variant,
        )

    def expected_json(
        self,
        *,
        schema: Mapping[str, Any] | None,
        name: str = "",
        seed: int | None,
        model: str,
        temperature: float | None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        prompt: str | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The JSON text the server answers for a structured-output request with these inputs.

        ``{"type": "json_schema"}``: pass its ``schema`` and ``name`` (the SDK's ``parse`` names it after
        the pydantic model); ``{"type": "json_object"}``: pass ``schema=None``, for ``{"answer": <text>}``.
        Chat ``response_format`` and the Responses API's ``text.format`` alike.
        """
        if schema is None:
            text = self.expected_text(
                seed=seed,
                model=model,
                temperature=temperature,
                messages=messages,
                prompt=prompt,
                max_tokens=max_tokens,
            )
            return json_text({"answer": text})
        return self.expected_tool_arguments(
            name=name,
            parameters=schema,
            seed=seed,
            model=model,
            temperature=temperature,
            messages=messages,
            prompt=prompt,
            max_tokens=max_tokens,
        )

    # ------------------------------------------------------------------------------ request handling

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            request.arrived = next(self._events)
            self.requests.append(request)

    def _finishing(self, request: ReceivedRequest) -> None:
        """Note that the last part of ``request``'s answer is about to be sent (see ``finished``)."""
        with self._lock:
            request.finished = next(self._events)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise _AbortConnection  # stop() woke us: a stopped server answers nothing

    def _settings(self) -> _Settings:
        with self._lock:
            return _Settings(
                fingerprint=self.fingerprint,
                fingerprint_style=self.fingerprint_style,
                variant=self.variant,
                model_override=self.model_override,
                gzip=self.gzip,
                edit_content=self.edit_content,
                response_headers=dict(self.response_headers),
                sample_unseeded=self.sample_unseeded,
                latency=self.latency,
            )

    def _answer(self, handler: _Handler, request: ReceivedRequest) -> None:
        settings = self._settings()
        if request.path not in KNOWN_PATHS:
            self._send_error(handler, settings, request, 404, f"Unknown request URL: {request.path}")
            return
        expected_method = "GET" if request.path == "/v1/models" else "POST"
        if request.method != expected_method:
            self._send_error(handler, settings, request, 405, f"Method {request.method} not allowed")
            return
        if request.path == "/v1/models":
            self._send_json(handler, settings, request, 200, _models_list())
            return

        with self._lock:
            hang = self._hangs.popleft() if self._hangs else None
            failure = self._failures.popleft() if self._failures else None
            raw = self._raw.popleft() if self._raw else None
            meeting = self._meetings.popleft() if self._meetings else None
        if meeting is not None:
            try:
                meeting.wait()
            except threading.BrokenBarrierError:
                if self._stopping.is_set():
                    raise _AbortConnection from None  # a stopped server answers nothing
                # else timed out: the others never came, so this one answers alone
        if raw is not None:
            headers = {"Content-Type": raw.content_type, "Content-Length": str(len(raw.body))}
            self._send_headers(handler, settings, raw.status, headers)
            self._finishing(request)
            handler.wfile.write(raw.body)
            return
        if hang is not None and self._stopping.wait(hang):
            raise _AbortConnection  # stop() woke us: a stopped server answers nothing
        if failure is not None:
            extra: dict[str, str] = {}
            if failure.retry_after is not None:
                extra["retry-after"] = f"{failure.retry_after:g}"
                extra["retry-after-ms"] = f"{max(1.0, failure.retry_after * 1000):g}"
            self._send_error(handler, settings, request, failure.status, failure.message, extra)
            return

        try:
            if request.path in UPLOAD_PATHS:
                self._answer_upload(handler, settings, request, _multipart_fields(request))
                return
            if request.body is None:
                raise _BadRequest("The request body must be a JSON object.")
            if request.path == "/v1/embeddings":
                self._answer_embeddings(handler, settings, request, request.body)
                return
            if request.path == "/v1/chat/completions":
                self._answer_chat(handler, settings, request, request.body)
            elif request.path == "/v1/completions":
                self._answer_completion(handler, settings, request, request.body)
            else:
                self._answer_responses(handler, settings, request, request.body)
        except _BadRequest as error:
            self._send_error(handler, settings, request, 400, str(error))

    def _answer_embeddings(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model = body.get("model")
        if not isinstance(model, str):
            raise _BadRequest("'model' is a required property.")
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise _BadRequest("'input' must be a string or a non-empty array.")
        dimensions = _optional_int(body, "dimensions") or DEFAULT_DIMENSIONS
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _BadRequest("'encoding_format' must be 'float' or 'base64'.")
        data = []
        for index, item in enumerate(inputs):
            vector = embedding_for(model=model, input=item, dimensions=dimensions, variant=settings.variant)
            value: object = vector
            if encoding == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(_count_words(item) for item in inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._send_json(handler, settings, request, 200, payload)

    def _answer_upload(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, fields: dict[str, _Part]
    ) -> None:
        def text(name: str, default: str | None = None) -> str:
            part = fields.get(name)
            if part is None:
                if default is None:
                    raise _BadRequest(f"'{name}' is a required property.")
                return default
            return part.data.decode("utf-8")

        def upload(*names: str) -> _Part:
            for name in names:
                part = fields.get(name)
                if part is not None and part.filename is not None:
                    return part
            raise _BadRequest(f"'{names[0]}' must be a file.")

        if request.path == "/v1/audio/transcriptions":
            audio = upload("file")
            answer = transcription_for(model=text("model"), audio=audio.data, variant=settings.variant)
            response_format = text("response_format", "json")
            if response_format == "text":
                body = answer.encode("utf-8")
                self._send_headers(
                    handler,
                    settings,
                    200,
                    {"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))},
                )
                self._finishing(request)
                handler.wfile.write(body)
                return
            if response_format != "json":
                raise _BadRequest("'response_format' must be 'json' or 'text' on this server.")
            self._send_json(handler, settings, request, 200, {"text": answer})
        elif request.path == "/v1/files":
            file = upload("file")
            purpose = text("purpose")
            digest = hashlib.sha256(b"\0".join([file.data, (file.filename or "").encode(), purpose.encode()]))
            payload = {
                "id": f"file-{digest.hexdigest()[:24]}",
                "object": "file",
                "bytes": len(file.data),
                "created_at": CREATED,
                "filename": file.filename,
                "purpose": purpose,
                "status": "processed",
            }
            self._send_json(handler, settings, request, 200, payload)
        else:
            image = upload("image", "image[]")
            prompt = text("prompt")
            n = int(text("n", "1"))
            images = [
                {"b64_json": base64.b64encode(_image_bytes(image.data, prompt, index)).decode("ascii")}
                for index in range(n)
            ]
            self._send_json(handler, settings, request, 200, {"created": CREATED, "data": images})

    def _answer_chat(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model, seed, temperature, max_tokens = _common_params(body)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise _BadRequest("'messages' is a required property and must be an array.")
        last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
        answers = [
            self._chat_choice(
                body,
                generate_text(
                    seed=seed,
                    model=model,
                    temperature=temperature,
                    messages=messages,
                    max_tokens=max_tokens,
                    variant=settings.variant,
                    choice=index,
                ),
                last_role,
                max_tokens,
                settings.edit_content,
            )
            for index in range(_choice_count(body))
        ]
        usage = _usage(_count_words(messages), sum(answer.completion_tokens for answer in answers))
        answer_model = settings.model_override or model
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        if not body.get("stream"):
            completion: JSONObject = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": answer_model,
                "choices": [
                    {
                        "index": index,
                        "message": answer.message,
                        "logprobs": None,
                        "finish_reason": answer.finish,
                    }
                    for index, answer in enumerate(answers)
                ],
                "usage": usage,
            }
            _stamp_whole(completion, settings)
            self._send_json(handler, settings, request, 200, completion)
            return

        include_usage = _include_usage(body)

        def chunk(choices: list[JSONObject]) -> JSONObject:
            data: JSONObject = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer_model,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None  # the real API sends null usage on every chunk but the last
            return data

        def choice(index: int, delta: JSONObject, finish: str | None = None) -> JSONObject:
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

        # The choices of an n > 1 answer arrive interleaved, each chunk under its choice's index.
        chunks = [
            chunk([choice(index, delta)])
            for deltas in itertools.zip_longest(*(_chat_deltas(answer) for answer in answers))
            for index, delta in enumerate(deltas)
            if delta is not None
        ]
        chunks += [chunk([choice(index, {}, answer.finish)]) for index, answer in enumerate(answers)]
        if include_usage:
            usage_chunk = chunk([])
            usage_chunk["usage"] = usage
            chunks.append(usage_chunk)
        _stamp_chunks(chunks, settings)
        self._send_stream(handler, settings, request, chunks)

    def _chat_choice(
        self,
        body: JSONObject,
        text: str,
        last_role: object,
        max_tokens: int | None,
        edit: Callable[[str], str] | None = None,
    ) -> _ChatChoice:
        """One choice of a chat answer whose generated text is ``text``."""
        # Tool calls until the conversation answers them (the last message is the tools' result).
        if body.get("tools") is not None:
            functions = _chosen_functions(
                _function_tools(body.get("tools"), "tools", nested=True),
                body.get("tool_choice"),
                body.get("parallel_tool_calls"),
                answered=last_role == "tool",
            )
            legacy = []
        else:
            functions = []
            legacy = _chosen_legacy_function(body, answered=last_role in ("tool", "function"))
        message: JSONObject = {"role": "assistant", "content": None}
        calls: list[JSONObject] = []
        content_pieces: list[str] = []
        if functions:
            calls = [
                {"id": _new_call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}
                for name, arguments in _calls_arguments(functions, text)
            ]
            message["tool_calls"] = calls
            finish_reason = "tool_calls"
            completion_tokens = sum(_json_tokens(call["function"]["arguments"]) for call in calls)
        elif legacy:
            [(name, arguments)] = _calls_arguments(legacy, text)
            message["function_call"] = {"name": name, "arguments": arguments}
            finish_reason, completion_tokens = "function_call", _json_tokens(arguments)
        else:
            structured = _structured_content(body.get("response_format"), "response_format", text)
            if edit is not None:
                text = edit(text) if structured is None else text
                structured = None if structured is None else edit(structured)
            if structured is None:
                message["content"] = text
                content_pieces = _split_words_keeping_separators(text)
                finish_reason, completion_tokens = _finish_reason(max_tokens), len(text.split())
            else:
                # A JSON answer is always whole (finish_reason "stop"), whatever max_tokens says.
                message["content"] = structured
                content_pieces = _split_json(structured)
                finish_reason, completion_tokens = "stop", _json_tokens(structured)
        message["refusal"] = None
        return _ChatChoice(message, finish_reason, completion_tokens, content_pieces)

    def _answer_completion(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model, seed, temperature, max_tokens = _common_params(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)):
            raise _BadRequest("'prompt' is a required property and must be a string or an array.")
        texts = [
            generate_text(
                seed=seed,
                model=model,
                temperature=temperature,
                prompt=prompt,
                max_tokens=max_tokens,
                variant=settings.variant,
                choice=index,
            )
            for index in range(_choice_count(body))
        ]
        if settings.edit_content is not None:
            texts = [settings.edit_content(text) for text in texts]
        finish_reason = _finish_reason(max_tokens)
        usage = _usage(_count_words(prompt), sum(len(text.split()) for text in texts))
        answer_model = settings.model_override or model
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def completion(choices: list[tuple[int, str, str | None]]) -> JSONObject:
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": answer_model,
                "choices": [
                    {"index": index, "text": choice_text, "logprobs": None, "finish_reason": finish}
                    for index, choice_text, finish in choices
                ],
            }

        if not body.get("stream"):
            whole = completion([(index, text, finish_reason) for index, text in enumerate(texts)])
            whole["usage"] = usage
            _stamp_whole(whole, settings)
            self._send_json(handler, settings, request, 200, whole)
            return

        chunks = [
            completion([(index, piece, None)])
            for pieces in itertools.zip_longest(*(_split_words_keeping_separators(text) for text in texts))
            for index, piece in enumerate(pieces)
            if piece is not None
        ]
        chunks += [completion([(index, "", finish_reason)]) for index in range(len(texts))]
        if _include_usage(body):
            usage_chunk = completion([])
            usage_chunk["usage"] = usage
            chunks.append(usage_chunk)
        _stamp_chunks(chunks, settings)
        self._send_stream(handler, settings, request, chunks)

    def _answer_responses(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model = body.get("model")
        if not isinstance(model, str):
            raise _BadRequest("'model' is a required property.")
        user_input = body.get("input")
        if not isinstance(user_input, (str, list)):
            raise _BadRequest("'input' is a required property and must be a string or an array.")
        temperature = _optional_number(body, "temperature")
        max_tokens = _optional_int(body, "max_output_tokens")
        variant = settings.variant
        if settings.sample_unseeded:  # a sampling model: the k-th answer of the knob's counter
            with self._lock:
                sample, self._samples = self._samples, self._samples + 1
            variant = _sampled(variant, sample)
        # The Responses API has no seed; a string input hashes like a legacy prompt, a list like messages.
        text = generate_text(
            seed=None,
            model=model,
            temperature=temperature,
            messages=user_input if isinstance(user_input, list) else None,
            prompt=user_input if isinstance(user_input, str) else None,
            max_tokens=max_tokens,
            variant=variant,
        )
        last_item = user_input[-1] if isinstance(user_input, list) and user_input else None
        # Function calls until the input answers them (its last item is a function_call_output).
        answered = isinstance(last_item, dict) and last_item.get("type") == "function_call_output"
        functions = _chosen_functions(
            _function_tools(body.get("tools"), "tools", nested=False),
            body.get("tool_choice"),
            body.get("parallel_tool_calls"),
            answered=answered,
        )
        output: list[JSONObject] = []
        for name, arguments in _calls_arguments(functions, text):
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{uuid.uuid4().hex}",
                    "call_id": _new_call_id(),
                    "name": name,
                    "arguments": arguments,
                    "status": "completed",
                }
            )
        text_config = body.get("text")
        if text_config is not None and not isinstance(text_config, dict):
            raise _BadRequest("'text' must be an object.")
        structured: str | None = None
        if not output:
            structured = _structured_content((text_config or {}).get("format"), "text.format", text)
            answer = text if structured is None else structured
            if settings.edit_content is not None:
                answer = settings.edit_content(answer)
            part = {"type": "output_text", "text": answer, "annotations": [], "logprobs": []}
            message_id = f"msg_{uuid.uuid4().hex}"
            output.append(
                {
                    "type": "message",
                    "id": message_id,
                    "role": "assistant",
                    "status": "completed",
                    "content": [part],
                }
            )
        input_tokens = _count_words(user_input)
        if functions:
            output_tokens = sum(_json_tokens(item["arguments"]) for item in output)
        else:
            output_tokens = len(text.split()) if structured is None else _json_tokens(structured)
        now = int(time.time())
        response: JSONObject = {
            "id": f"resp_{uuid.uuid4().hex}",
            "object": "response",
            "created_at": now,
            "status": "completed",
            "completed_at": now,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": max_tokens,
            "model": settings.model_override or model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
            "previous_response_id": body.get("previous_response_id"),
            "temperature": temperature,
            "text": text_config or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto",
            "tools": body.get("tools") or [],
            "top_p": _optional_number(body, "top_p"),
            "truncation": "disabled",
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
            "metadata": {},
        }
        if not body.get("stream"):
            self._send_json(handler, settings, request, 200, response)
            return
        plain = not functions and structured is None
        events = _response_events(response, _split_words_keeping_separators if plain else _split_json)
        self._send_events(handler, settings, request, [_sse(event, named=True) for event in events])

    # ------------------------------------------------------------------------------------- writing

    def _send_headers(
        self, handler: _Handler, settings: _Settings, status: int, headers: dict[str, str]
    ) -> None:
        handler.send_response(status)
        for name, value in {**settings.response_headers, **headers}.items():
            handler.send_header(name, f"req_{uuid.uuid4().hex}" if value == FRESH_REQUEST_ID else value)
        handler.end_headers()

    def _send_json(
        self,
        handler: _Handler,
        settings: _Settings,
        request: ReceivedRequest,
        status: int,
        payload: JSONObject,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self._send_bytes(handler, settings, request, status, json.dumps(payload).encode(), extra_headers)

    def _send_bytes(
        self,
        handler: _Handler,
        settings: _Settings,
        request: ReceivedRequest,
        status: int,
        body: bytes,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json", **(extra_headers or {})}
        # Like api.openai.com, gzip JSON when the client accepts it, so the plugin's recordings
        # see (and must cope with) compressed bodies.  zstd/br are ignored on purpose.
        if settings.gzip and "gzip" in request.headers.get("accept-encoding", "").lower():
            body = gzip_module.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(body))
        if status == 200 and request.path in COMPLETION_PATHS:
            self._wait(settings.latency)
        self._send_headers(handler, settings, status, headers)
        self._finishing(request)
        if request.method != "HEAD":
            handler.wfile.write(body)

    def _send_error(
        self,
        handler: _Handler,
        settings: _Settings,
        request: ReceivedRequest,
        status: int,
        message: str,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self._send_bytes(handler, settings, request, status, _error_body(status, message), extra_headers)

    def _send_stream(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, chunks: list[JSONObject]
    ) -> None:
        """Send chat or legacy completion chunks as ``data:`` events, then ``data: [DONE]``."""
        events = [_sse(chunk, named=False) for chunk in chunks]
        self._send_events(handler, settings, request, [*events, b"data: [DONE]\n\n"])

    def _send_events(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, events: list[bytes]
    ) -> None:
        """Send server-sent events with chunked transfer encoding, never compressed.

        Chunked encoding (rather than Connection: close) keeps the connection reusable and makes an
        abrupt cut detectable by the client as an incomplete body, which is what cut_next_stream is for.
        The last event ends the stream (chat's ``[DONE]``, the Responses API's ``response.completed``):
        a cut stream never reaches it, even if after_chunks exceeds the number of events before it.
        """
        with self._lock:
            cut_after = self._cuts.popleft() if self._cuts else None
            stall = self._stalls.popleft() if self._stalls else None
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        self._send_headers(handler, settings, 200, headers)
        cut_at = None if cut_after is None else min(cut_after, len(events) - 1)
        for index, event in enumerate(events):
            if index == cut_at:
                raise _AbortConnection
            if stall is not None and index == stall[0]:
                handler.wfile.flush()
                if self._stopping.wait(stall[1]):
                    raise _AbortConnection  # stop() woke us: a stopped server answers nothing
            if settings.latency:
                handler.wfile.flush()  # what was generated so far is on its way
                self._wait(settings.latency / len(events))
            if index == len(events) - 1:
                self._finishing(request)
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        handler.wfile.write(b"0\r\n\r\n")


def _shutdown_quietly(connection: socket.socket) -> None:
    # Shutdown (not close) wakes a handler blocked reading or writing; the handler thread then closes.
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


def _optional_number(body: JSONObject, name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f"'{name}' must be a number.")
    return value


def _optional_int(body: JSONObject, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadRequest(f"'{name}' must be a non-negative integer.")
    return value


def _common_params(body: JSONObject) -> tuple[str, int | None, float | None, int | None]:
    """model, seed, temperature, max_tokens of a chat or legacy completion request."""
    model = body.get("model")
    if not isinstance(model, str):
        raise _BadRequest("'model' is a required property.")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _BadRequest("'seed' must be an integer.")
    max_tokens = _optional_int(body, "max_tokens")
    if max_tokens is None:
        # Newer SDKs and reasoning models use max_completion_tokens; treat it as the same limit.
        max_tokens = _optional_int(body, "max_completion_tokens")
    return model, seed, _optional_number(body, "temperature"), max_tokens


def _choice_count(body: JSONObject) -> int:
    """``n``: how many choices a chat or legacy completion answers (1 without it)."""
    count = _optional_int(body, "n")
    if count == 0:
        raise _BadRequest("'n' must be at least 1.")
    return 1 if count is None else count


def _chat_deltas(answer: _ChatChoice) -> list[JSONObject]:
    """The stream deltas of one chat choice, before its finishing chunk."""
    message = answer.message
    if message.get("tool_calls"):
        # Like OpenAI: each call opens with its index, id, type and name (arguments ""), and its
        # arguments follow in pieces under the same index.
        deltas: list[JSONObject] = [{"role": "assistant", "content": None}]
        for index, call in enumerate(message["tool_calls"]):
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            opening = {"index": index, "id": call["id"], "type": "function"}
            deltas.append({"tool_calls": [{**opening, "function": {"name": name, "arguments": ""}}]})
            deltas += [
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in _split_in_pieces(arguments)
            ]
        return deltas
    if "function_call" in message:
        name, arguments = message["function_call"]["name"], message["function_call"]["arguments"]
        deltas = [
            {"role": "assistant", "content": None},
            {"function_call": {"name": name, "arguments": ""}},
        ]
        return deltas + [{"function_call": {"arguments": piece}} for piece in _split_in_pieces(arguments)]
    return [{"role": "assistant", "content": ""}, *({"content": piece} for piece in answer.content_pieces)]


def _new_call_id() -> str:
    # Fresh on every answer, like OpenAI's: recordings and snapshots must not depend on it.
    return f"call_{uuid.uuid4().hex[:24]}"


def _function_tools(tools: object, where: str, *, nested: bool) -> list[tuple[str, object]]:
    """(name, parameters) of the function tools; other tool types (web_search, custom ...) are ignored.

    Chat nests them as ``{"type": "function", "function": {"name", "parameters"}}``, the Responses API
    does not: ``{"type": "function", "name", "parameters"}``.
    """
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _BadRequest(f"'{where}' must be an array.")
    functions: list[tuple[str, object]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _BadRequest(f"'{where}[{index}]' must be an object.")
        if tool.get("type", "function") != "function":
            continue
        spec = tool.get("function") if nested else tool
        path = f"{where}[{index}].function" if nested else f"{where}[{index}]"
        if not isinstance(spec, dict):
            raise _BadRequest(f"Missing required parameter: '{path}'.")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _BadRequest(f"Missing required parameter: '{path}.name'.")
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _BadRequest(f"'{path}.parameters' must be an object.")
        functions.append((name, parameters))
    return functions


def _chosen_functions(
    functions: list[tuple[str, object]], tool_choice: object, parallel: object, *, answered: bool
) -> list[tuple[str, object]]:
    """The functions to call: none once answered or with tool_choice "none"; the named one; else the
    first, or every one (parallel calls) when there are several and parallel_tool_calls is not false."""
    named: object = None
    if isinstance(tool_choice, dict):
        if tool_choice.get("type") != "function":  # e.g. "allowed_tools", not implemented here
            raise _BadRequest(f"Invalid value for 'tool_choice': {tool_choice!r}.")
        # Chat: {"type": "function", "function": {"name": ...}}; Responses: {"type": "function", "name": ...}.
        inner = tool_choice.get("function")
        named = inner.get("name") if isinstance(inner, dict) else tool_choice.get("name")
        if not isinstance(named, str):
            raise _BadRequest("Missing required parameter: 'tool_choice' function name.")
    elif tool_choice not in (None, "none", "auto", "required"):
        raise _BadRequest(f"Invalid value for 'tool_choice': {tool_choice!r}.")
    if named is not None and named not in [name for name, _ in functions]:
        raise _BadRequest(f"Invalid value for 'tool_choice': no function named {named!r} in 'tools'.")
    if not functions or answered or tool_choice == "none":
        return []
    if named is not None:
        return [function for function in functions if function[0] == named][:1]
    if len(functions) >= 2 and parallel is not False:
        return functions
    return functions[:1]


def _chosen_legacy_function(body: JSONObject, *, answered: bool) -> list[tuple[str, object]]:
    """The legacy form: ``functions: [{name, parameters}]`` and ``function_call``: "none", "auto" or
    ``{"name": ...}``; at most one call, never parallel."""
    listed = _function_tools(body.get("functions"), "functions", nested=False)
    choice = body.get("function_call")
    if isinstance(choice, dict):
        choice = {**choice, "type": "function"}
    return _chosen_functions(listed, choice, False, answered=answered)


def _calls_arguments(functions: list[tuple[str, object]], text: str) -> list[tuple[str, str]]:
    return [(name, _json_answer(parameters, text, name)) for name, parameters in functions]


def _json_answer(schema: object, text: str, name: str) -> str:
    try:
        return json_text(generate_json(_parameters_or_empty(schema), text=text, name=name))
    except ValueError as error:
        raise _BadRequest(f"Invalid schema for {name!r}: {error}") from None


def _structured_content(response_format: object, where: str, text: str) -> str | None:
    """The JSON answer a response format asks for, or None for plain text.

    ``{"type": "json_schema", ...}``: a value of the schema (chat nests it as ``json_schema: {name,
    schema}``, the Responses API's ``text.format`` does not); ``{"type": "json_object"}``:
    ``{"answer": <text>}``.
    """
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise _BadRequest(f"'{where}' must be an object.")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_text({"answer": text})
    if kind == "json_schema":
        spec = (
            response_format.get("json_schema", response_format)
            if where == "response_format"
            else response_format
        )
        if not isinstance(spec, dict):
            raise _BadRequest(f"Missing required parameter: '{where}.json_schema'.")
        name = spec.get("name")
        return _json_answer(
            spec.get("schema", {"type": "object"}), text, name if isinstance(name, str) else ""
        )
    raise _BadRequest(f"Invalid value for '{where}.type': {kind!r}.")


def _json_tokens(text: str) -> int:
    """Usage tokens of a JSON answer or arguments: its runs of letters and digits."""
    return len(re.findall(r"\w+", text))


def _split_in_pieces(text: str, count: int = 3) -> list[str]:
    """``text`` in ``count`` (or, when shorter, ``len(text)``) nearly equal pieces; ''.join gives it back."""
    count = max(1, min(count, len(text)))
    bounds = [len(text) * index // count for index in range(count + 1)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def _split_json(text: str, size: int = 16) -> list[str]:
    """A JSON answer streamed as content: pieces of ``size`` characters."""
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


def _sse(data: JSONObject, *, named: bool) -> bytes:
    """One server-sent event; the Responses API also names it with an ``event:`` line, like OpenAI."""
    line = f"data: {json.dumps(data)}\n\n"
    return (f"event: {data['type']}\n{line}" if named else line).encode()


def _response_events(response: JSONObject, split: Any) -> list[JSONObject]:
    """The events of a streamed Responses API answer, in OpenAI's order, numbered from 0.

    response.created and response.in_progress carry the response with status "in_progress" and no
    output; each output item is opened (output_item.added), filled (content_part.added, output_text.delta
    pieces, output_text.done, content_part.done for a message; function_call_arguments.delta pieces and
    function_call_arguments.done for a function call) and closed (output_item.done); response.completed
    carries the whole response, exactly as the non-streamed answer would be.
    """
    started = {**response, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    events: list[JSONObject] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    for output_index, item in enumerate(response["output"]):
        at = {"item_id": item["id"], "output_index": output_index}
        if item["type"] == "function_call":
            opened = {**item, "arguments": "", "status": "in_progress"}
            events.append(
                {"type": "response.output_item.added", "output_index": output_index, "item": opened}
            )
            events += [
                {"type": "response.function_call_arguments.delta", **at, "delta": piece}
                for piece in _split_in_pieces(item["arguments"])
            ]
            arguments = item["arguments"]
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **at,
                    "name": item["name"],
                    "arguments": arguments,
                }
            )
        else:
            opened = {**item, "content": [], "status": "in_progress"}
            events.append(
                {"type": "response.output_item.added", "output_index": output_index, "item": opened}
            )
            part = item["content"][0]
            at = {**at, "content_index": 0}
            events.append({"type": "response.content_part.added", **at, "part": {**part, "text": ""}})
            events += [
                {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
                for piece in split(part["text"])
            ]
            events.append({"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []})
            events.append({"type": "response.content_part.done", **at, "part": part})
        events.append({"type": "response.output_item.done", "output_index": output_index, "item": item})
    events.append({"type": "response.completed", "response": response})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def _include_usage(body: JSONObject) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage(prompt_tokens: int, completion_tokens: int) -> JSONObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _check_style(style: str) -> None:
    # A typo in a test's knob must not silently behave like some other style; the handler turns this
    # into a 500 "llmserver bug" answer that names the bad value.
    if style not in FINGERPRINT_STYLES:
        raise ValueError(f"unknown fingerprint_style {style!r}; expected one of {FINGERPRINT_STYLES}")


def _stamp_whole(payload: JSONObject, settings: _Settings) -> None:
    """Put system_fingerprint on a non-streamed answer according to the style."""
    _check_style(settings.fingerprint_style)
    if settings.fingerprint_style == "absent":
        return
    if settings.fingerprint_style == "constant":
        payload["system_fingerprint"] = OLLAMA_FINGERPRINT
    else:
        payload["system_fingerprint"] = settings.fingerprint


def _stamp_chunks(chunks: list[JSONObject], settings: _Settings) -> None:
    """Put system_fingerprint on stream chunks the way the imitated server does.

    every: all chunks (OpenAI, llama-server); last: only the last, others null (vLLM);
    first_null: all but the first, which is null (Azure); absent: no key (llama-cpp-python);
    constant: "fp_ollama" everywhere (Ollama); disagree: chunks [0, n//2) carry the fingerprint and
    the rest carry fingerprint + "_b" (for testing that inconsistent chunks are reported).
    """
    style, fingerprint = settings.fingerprint_style, settings.fingerprint
    _check_style(style)
    if style == "absent":
        return
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks):
        value: str | None
        if style == "every":
            value = fingerprint
        elif style == "last":
            value = fingerprint if index == last else None
        elif style == "first_null":
            value = None if index == 0 else fingerprint
        elif style == "constant":
            value = OLLAMA_FINGERPRINT
        else:  # disagree
            if index < len(chunks) // 2:
                value = fingerprint
            else:
                value = None if fingerprint is None else fingerprint + "_b"
        chunk["system_fingerprint"] = value


def embedding_for(*, model: str, input: object, dimensions: int, variant: str = "") -> list[float]:
    """The embedding of one input: values k/256 in [-1, 1), exact in float32, so base64 loses nothing."""
    key = _canonical_json({"model": model, "input": input, "variant": variant})
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big"))
    return [rng.randrange(-256, 256) / 256 for _ in range(dimensions)]


def transcription_for(*, model: str, audio: bytes, variant: str = "") -> str:
    """The transcription of ``audio``: generated text keyed by the file's digest (its bytes matter)."""
    return generate_text(
        seed=None, model=model, temperature=None, prompt=hashlib.sha256(audio).hexdigest(), variant=variant
    )


def _image_bytes(image: bytes, prompt: str, index: int) -> bytes:
    # Not a real image: a PNG signature and a digest, which is all a test needs to compare.
    digest = hashlib.sha256(b"\0".join([image, prompt.encode("utf-8"), str(index).encode()])).digest()
    return b"\x89PNG\r\n\x1a\n" + digest


@dataclasses.dataclass(frozen=True)
class _Part:
    """One field of a ``multipart/form-data`` body."""

    data: bytes
    filename: str | None


_DISPOSITION_PARAM = re.compile(r';\s*(name|filename)="([^"]*)"')


def _multipart_fields(request: ReceivedRequest) -> dict[str, _Part]:
    """The fields of a ``multipart/form-data`` body, by name, bytes kept exactly (binary files too)."""
    content_type = request.headers.get("content-type", "")
    found = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or found is None:
        raise _BadRequest("This endpoint takes a multipart/form-data body.")
    delimiter = b"--" + found.group(1).encode("latin-1")
    fields: dict[str, _Part] = {}
    for chunk in request.raw_body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, separator, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise _BadRequest("A multipart part has no header.")
        params = dict(_DISPOSITION_PARAM.findall(head.decode("utf-8", errors="replace")))
        if "name" not in params:
            raise _BadRequest("A multipart part has no name.")
        fields[params["name"]] = _Part(data=data.removesuffix(b"\r\n"), filename=params.get("filename"))
    return fields


def _models_list() -> JSONObject:
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "llmserver"}
            for model in DEFAULT_MODELS
        ],
    }


@contextlib.contextmanager
def running_server(port: int = 0) -> Iterator[LLMServer]:
    """Start an LLMServer (on ``port``, 0 = free), yield it, and stop it afterwards."""
    server = LLMServer()
    server.start(port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A freshly started LLMServer for one test, stopped afterwards."""
    with running_server() as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted: ``python tests/llmserver.py --port 8765`` (used to re-record examples/)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fingerprint", default="fp_test_1")
    args = parser.parse_args(argv)
    server = LLMServer()
    server.fingerprint = args.fingerprint
    server.start(args.port)
    print(f"serving {server.base_url} (fingerprint {server.fingerprint}); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
