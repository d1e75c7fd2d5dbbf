"""Ids the server assigns, the fields that carry them, and recordings that store them numbered per test.

Servers hand out fresh ids on every answer (``chatcmpl-...``, tool calls'
``call_...``, Responses API ``resp_``/``msg_``/``fc_``/``rs_`` items) and an
app sends some back (a tool call's id, ``previous_response_id``, output items
passed back as input). They are not part of what a test asked: snapshots
number them (``call_1``, ``resp_1``, see ``snapshots.number_ids``) and
recordings store them numbered per test (:func:`stable_ids`). Both replace ids
only in the fields that carry them, exact values only, never an empty id.

Pure functions over JSON values and bodies; no openai, vcrpy or syrupy here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pytest_seedrepro.calls import is_read, sse_payload

#: An id's prefix (``chatcmpl-``, ``resp_``, ``msg_``, ``fc_``): kept, with a number after it.
ID_PREFIX = re.compile(r"[A-Za-z]+[_-]")
#: Responses API input item keys that carry an id the server assigned.
INPUT_ID_KEYS = ("id", "call_id", "item_id")
#: Chat and legacy completion objects: their ``id`` and ``created`` are the server's.
_COMPLETIONS = frozenset({"chat.completion", "chat.completion.chunk", "text_completion"})
#: A Responses API object's wall-clock times, which change on every answer like ``created``.
_RESPONSE_TIMES = ("created_at", "completed_at")

#: One exchange of a recording: the request's URL (or path), the request's body, the response's body.
Exchange = tuple[str, Any, Any]


def numbered_request(request: dict[str, Any], numbers: Mapping[str, str]) -> dict[str, Any]:
    """``request`` with each id an app sends back replaced by its number in ``numbers`` (others kept).

    The fields: chat ``messages[].tool_calls[].id`` and ``messages[].tool_call_id``;
    Responses API ``previous_response_id`` and ``input[]`` items' ``id``,
    ``call_id`` and ``item_id``.
    """

    def number(value: Any) -> Any:
        return numbers.get(value, value) if isinstance(value, str) else value

    numbered = dict(request)
    if "previous_response_id" in request:
        numbered["previous_response_id"] = number(request["previous_response_id"])
    if isinstance(request.get("messages"), list):
        messages = []
        for message in request["messages"]:
            if isinstance(message, dict):
                message = dict(message)
                if "tool_call_id" in message:
                    message["tool_call_id"] = number(message["tool_call_id"])
                if isinstance(message.get("tool_calls"), list):
                    message["tool_calls"] = [
                        {**call, "id": number(call["id"])}
                        if isinstance(call, dict) and "id" in call
                        else call
                        for call in message["tool_calls"]
                    ]
            messages.append(message)
        numbered["messages"] = messages
    if isinstance(request.get("input"), list):
        numbered["input"] = [
            {key: number(value) if key in INPUT_ID_KEYS else value for key, value in item.items()}
            if isinstance(item, dict)
            else item
            for item in request["input"]
        ]
    return numbered


def numbered_answer(data: Any, define: Callable[[str], str], refer: Callable[[str], str]) -> Any:
    """An answer (whole, or one stream event) with its ids replaced and its wall-clock times 0.

    ``define`` gives the replacement of an id the answer assigns: a completion's
    ``id``, its tool calls' ``id`` (``message`` or stream ``delta``), a Responses
    API object's ``id`` and its output items' ``id`` and ``call_id`` (in stream
    events: ``response``, ``item`` and ``item_id``). ``refer`` gives that of an
    id it only echoes (``previous_response_id``). Anything else, text included,
    stays as it is.
    """
    if not isinstance(data, dict):
        return data
    kind = data.get("object")
    # A completion, or a chunk from a server that leaves ``object`` out.
    if kind in _COMPLETIONS or (kind is None and isinstance(data.get("choices"), list)):
        return _numbered_completion(data, define)
    if kind == "response":
        return _numbered_response(data, define, refer)
    event = data.get("type")
    if not (isinstance(event, str) and event.startswith("response.")):
        return data  # an error object, another endpoint's answer
    numbered = dict(data)
    if isinstance(data.get("response"), dict):
        numbered["response"] = _numbered_response(data["response"], define, refer)
    if isinstance(data.get("item"), dict):
        numbered["item"] = _numbered_item(data["item"], define)
    if "item_id" in data:
        numbered["item_id"] = _id(data["item_id"], define)
    return numbered


def _id(value: Any, replace: Callable[[str], str]) -> Any:
    return replace(value) if isinstance(value, str) and value else value  # an empty id is no id


def _numbered_completion(data: dict[str, Any], define: Callable[[str], str]) -> dict[str, Any]:
    numbered = dict(data)
    if "id" in data:
        numbered["id"] = _id(data["id"], define)
    if isinstance(data.get("created"), int | float):
        numbered["created"] = 0
    if isinstance(data.get("choices"), list):
        choices = []
        for choice in data["choices"]:
            if isinstance(choice, dict):
                choice = dict(choice)
                for key in ("message", "delta"):
                    message = choice.get(key)
                    if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
                        calls = [
                            {**call, "id": _id(call["id"], define)}
                            if isinstance(call, dict) and "id" in call
                            else call
                            for call in message["tool_calls"]
                        ]
                        choice[key] = {**message, "tool_calls": calls}
            choices.append(choice)
        numbered["choices"] = choices
    return numbered


def _numbered_response(
    data: dict[str, Any], define: Callable[[str], str], refer: Callable[[str], str]
) -> dict[str, Any]:
    numbered = dict(data)
    if "id" in data:
        numbered["id"] = _id(data["id"], define)
    if "previous_response_id" in data:
        numbered["previous_response_id"] = _id(data["previous_response_id"], refer)
    for key in _RESPONSE_TIMES:
        if isinstance(data.get(key), int | float):
            numbered[key] = 0
    if isinstance(data.get("output"), list):
        numbered["output"] = [
            _numbered_item(item, define) if isinstance(item, dict) else item for item in data["output"]
        ]
    return numbered


def _numbered_item(item: dict[str, Any], define: Callable[[str], str]) -> dict[str, Any]:
    numbered = dict(item)
    for key in ("id", "call_id"):
        if key in item:
            numbered[key] = _id(item[key], define)
    return numbered


def stable_ids(exchanges: Sequence[Exchange], nodeid: str) -> list[Exchange]:
    """Each exchange with the server's ids numbered for the test, in its request and response.

    An id an answer assigns becomes ``<its prefix><test>-<n>`` (``chatcmpl-``,
    ``call_``, ``resp_``...; ``id-`` for an id without one): ``<test>`` is 12
    hex digits of the SHA-256 of ``nodeid`` and ``n`` counts the ids in file
    order, so each answer's id is its own within the test and across tests,
    and the same on every run. Each answer numbers its own ids, even when a
    server repeats one. An id a request sends back gets the number of the
    answer that assigned it (the last one before it; else the first after
    it, for calls from threads stored by content); ids the app made up
    itself stay as they are. ``created`` and a Responses API object's times
    become 0.

    Only chat, legacy completions and the Responses API (``calls.is_read``)
    assign numbers. Other endpoints (uploads, files, embeddings) keep their
    own ids and their request bodies; only an id numbered here that comes back
    in their URL path (a path segment equal to it: retrieving or deleting a
    stored response) or in their answer (the retrieved response) is replaced.
    A URL or body is returned as the same object when nothing in it changed,
    so a recording numbered before is numbered to the same bytes (idempotent).
    """
    test = hashlib.sha256(nodeid.encode("utf-8")).hexdigest()[:12]
    count = 0
    scopes: list[dict[str, str]] = []
    first: dict[str, str] = {}
    for url, _, response in exchanges:
        scope: dict[str, str] = {}
        if is_read(urlsplit(url).path):

            def define(raw: str, scope: dict[str, str] = scope) -> str:
                nonlocal count
                if raw not in scope:
                    count += 1
                    prefix = ID_PREFIX.match(raw)
                    scope[raw] = f"{prefix.group() if prefix else 'id-'}{test}-{count}"
                return scope[raw]

            _rewritten(response, lambda data: numbered_answer(data, define, _same), write=False)
            for raw, number in scope.items():
                first.setdefault(raw, number)
        scopes.append(scope)

    latest: dict[str, str] = {}
    known = ChainMap(latest, first)
    refer = partial(_looked_up, known)
    numbered: list[Exchange] = []
    for (url, request, response), scope in zip(exchanges, scopes, strict=True):
        if is_read(urlsplit(url).path):
            request = _rewritten(request, partial(_numbered_body, numbers=known), compact=True)
            define = partial(_looked_up, scope)
        elif known:
            url = _numbered_url(url, known)
            define = refer  # a stored response retrieved by its id: the id it was created with
        else:
            numbered.append((url, request, response))
            continue
        response = _rewritten(response, partial(numbered_answer, define=define, refer=refer))
        latest.update(scope)
        numbered.append((url, request, response))
    return numbered


def _numbered_url(url: str, numbers: Mapping[str, str]) -> str:
    """``url`` with each path segment that is a numbered id replaced (``/v1/responses/<id>``)."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    path = "/".join(numbers.get(segment, segment) if segment else segment for segment in segments)
    return url if path == parts.path else urlunsplit(parts._replace(path=path))


def _same(raw: str) -> str:
    return raw


def _looked_up(numbers: Mapping[str, str], raw: str) -> str:
    return numbers.get(raw, raw)


def _numbered_body(data: Any, numbers: Mapping[str, str]) -> Any:
    return numbered_request(data, numbers) if isinstance(data, dict) else data


def _rewritten(body: Any, change: Callable[[Any], Any], *, compact: bool = False, write: bool = True) -> Any:
    """``body`` (a JSON text or server-sent events) with ``change`` applied to each JSON value in it.

    The same object when nothing changed, or when ``write`` is false (only
    ``change``'s side effects are wanted). Events keep their line ends.
    """
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body  # not text: not an answer the plugin reads
    elif isinstance(body, str):
        text = body
    else:
        return body
    stripped = text.lstrip()
    if stripped.startswith("{"):
        new = _changed_json(stripped, change, compact=compact, write=write)
    elif "data:" in text:
        lines = text.split("\n")
        changed = False
        for position, line in enumerate(lines):
            payload = sse_payload(line)
            if payload and payload.startswith("{"):
                event = _changed_json(payload, change, compact=compact, write=write)
                if event is not None:
                    lines[position] = "data: " + event + ("\r" if line.endswith("\r") else "")
                    changed = True
        new = "\n".join(lines) if changed else None
    else:
        new = None
    if new is None:
        return body
    return new.encode("utf-8") if isinstance(body, bytes) else new


def _changed_json(text: str, change: Callable[[Any], Any], *, compact: bool, write: bool) -> str | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    new = change(data)
    if not write or new == data:
        return None
    # Requests as the SDK sends them (compact), answers as recordings store completions.
    separators = (",", ":") if compact else None
    dumped = json.dumps(new, ensure_ascii=False, separators=separators)
    try:
        dumped.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: keep it escaped, as it came.
        dumped = json.dumps(new, separators=separators)
    return dumped
