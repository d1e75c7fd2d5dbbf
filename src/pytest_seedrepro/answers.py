"""Reading an API answer (whole or streamed) into a :class:`~pytest_seedrepro.calls.Call`.

Pure functions over bytes and JSON; no openai, vcrpy or syrupy here, so every
shape is unit-tested on plain data.

The output of a call is one text, the same whether the answer was streamed or
not: the message content, then a refusal, then one line per tool call
(``tool_call <id>: <name>(<arguments>)``, in the order of their index) and a
legacy ``function_call: <name>(<arguments>)``. For the Responses API: the
output items in order, text for messages and the same line for function
calls. A changed tool argument is a changed output.

An answer of an endpoint the plugin reads (chat, legacy completions, the
Responses API) that is not a complete answer sets ``call.error``: the test
fails and nothing of it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pytest_seedrepro.calls import Call, is_read, is_responses, sse_payload

#: Responses API stream events that end a complete answer, and those that end a failed one.
_RESPONSES_DONE = ("response.completed", "response.incomplete")
_RESPONSES_FAILED = ("response.failed", "error")


def tool_call_line(call_id: Any, name: Any, arguments: Any) -> str:
    """The output line of one tool call."""
    return f"tool_call {call_id}: {name}({arguments})"


def message_text(message: dict[str, Any]) -> str:
    """The output text of a chat message: content, refusal, tool calls, legacy function call."""
    parts: list[str] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(content)
    elif isinstance(content, list):  # content parts, as some servers send
        parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text"))
    if message.get("refusal"):
        parts.append(f"refusal: {message['refusal']}")
    for tool_call in message.get("tool_calls") or []:
        if isinstance(tool_call, dict):
            function = tool_call.get("function") or {}
            parts.append(tool_call_line(tool_call.get("id"), function.get("name"), function.get("arguments")))
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        parts.append(f"function_call: {function_call.get('name')}({function_call.get('arguments')})")
    return "\n".join(parts)


def responses_text(data: dict[str, Any]) -> str:
    """The output text of a Responses API object: its output items in order."""
    parts: list[str] = []
    for item in data.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    parts.append(str(part.get("text", "")))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    parts.append(f"refusal: {part.get('refusal')}")
        elif item.get("type") == "function_call":
            parts.append(tool_call_line(item.get("call_id"), item.get("name"), item.get("arguments")))
    return "\n".join(parts)


def tool_call_ids(data: dict[str, Any]) -> list[str]:
    """The ids the answer gave its tool calls, in order (volatile: the snapshot numbers them).

    Chat: every choice's ``tool_calls[].id``; Responses API: the output items' ``call_id``.
    An empty id is no id.
    """
    ids: list[str] = []
    for choice in data.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        for tool_call in (message or {}).get("tool_calls") or []:
            if isinstance(tool_call, dict) and isinstance(tool_call.get("id"), str) and tool_call["id"]:
                ids.append(tool_call["id"])
    for item in _output_items(data):
        if isinstance(item.get("call_id"), str) and item["call_id"]:
            ids.append(item["call_id"])
    return ids


def item_ids(data: dict[str, Any]) -> list[str]:
    """The other ids a Responses API answer assigned, in order: the response's, then its output items'.

    An app sends them back (``previous_response_id``, output items passed back
    as input), so the snapshot numbers them like tool-call ids.
    """
    if not isinstance(data.get("output"), list):
        return []
    ids = [data["id"]] if isinstance(data.get("id"), str) and data["id"] else []
    ids.extend(item["id"] for item in _output_items(data) if isinstance(item.get("id"), str) and item["id"])
    return ids


def _output_items(data: dict[str, Any]) -> list[dict[str, Any]]:
    output = data.get("output")
    return [item for item in output if isinstance(item, dict)] if isinstance(output, list) else []


def choice_text(choice: dict[str, Any]) -> str:
    """The output text of one choice of a chat or legacy completion."""
    if "text" in choice:
        return str(choice.get("text") or "")
    return message_text(choice.get("message") or {})


def text_of(data: dict[str, Any]) -> str:
    """The output text of a chat, legacy completion or Responses API object (a completion's first choice)."""
    choices = data.get("choices")
    if isinstance(choices, list) and choices:
        return choice_text(choices[0])
    if isinstance(data.get("output"), list):
        return responses_text(data)
    return ""


def choice_texts(data: dict[str, Any]) -> tuple[str, ...]:
    """Every choice's output text when a completion has more than one (``n > 1``), else ``()``."""
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        return ()
    return tuple(choice_text(choice) for choice in choices if isinstance(choice, dict))


def begin(content: bytes) -> str:
    """The first bytes of a body, for a message."""
    text = content[:40].decode("utf-8", errors="replace").strip()
    return repr(text) + ("..." if len(content) > 40 else "") if text else "empty"


def answer_problem(endpoint: str, data: dict[str, Any]) -> str | None:
    """Why a JSON answer of a read endpoint is not a complete answer, or ``None``."""
    error = data.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else error
        return f"the answer is an error object, not a completion: {message}"
    if is_responses(endpoint):
        if not isinstance(data.get("output"), list):
            return "the answer has no 'output' list: not a Responses API object"
        if data.get("status") == "failed":
            return "the response's status is 'failed'"
        return None
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        return "the answer has no 'choices': not a completion"
    return None


def fill_from_body(call: Call, content: bytes, content_type: str) -> None:
    """Read a whole answer into ``call``; an answer that is not a complete one sets ``call.error``."""
    read = is_read(call.endpoint)
    try:
        data = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        if read:
            call.error = f"the answer is not UTF-8 text (byte {exc.start}): not the API's JSON"
        return
    except ValueError:
        if read:
            kind = content_type or "none"
            call.error = f"the answer is not the API's JSON (content-type {kind}, begins {begin(content)})"
        return
    if not isinstance(data, dict):
        if read:
            call.error = f"the answer is JSON but not an object (begins {begin(content)})"
        return
    call.model = data.get("model")
    call.system_fingerprint = data.get("system_fingerprint")
    call.usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    if not read:
        call.output = ""
        return
    problem = answer_problem(call.endpoint, data)
    if problem:
        call.error = problem
        return
    call.tool_call_ids = tuple(tool_call_ids(data))
    call.item_ids = tuple(item_ids(data))
    call.outputs = choice_texts(data)
    call.output = text_of(data)


def sse_events(raw: bytes) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent-events body, in order (blank ones skipped)."""
    for line in raw.decode("utf-8", errors="replace").splitlines():
        payload = sse_payload(line)
        if payload:
            yield payload


class _StreamedMessage:
    """A chat message assembled from stream deltas, in the shape of a whole answer's message."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, str] | None = None
        self.text: list[str] = []  # legacy completions

    def add(self, choice: dict[str, Any]) -> None:
        if "text" in choice:
            self.text.append(choice.get("text") or "")
            return
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.content.append(str(delta["content"]))
        if delta.get("refusal"):
            self.refusal.append(str(delta["refusal"]))
        for piece in delta.get("tool_calls") or []:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", len(self.tool_calls))
            slot = self.tool_calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            function = piece.get("function") or {}
            slot["id"] = piece.get("id") or slot["id"]
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""
        if isinstance(delta.get("function_call"), dict):
            self.function_call = self.function_call or {"name": "", "arguments": ""}
            self.function_call["name"] += delta["function_call"].get("name") or ""
            self.function_call["arguments"] += delta["function_call"].get("arguments") or ""

    def message(self) -> dict[str, Any]:
        return {
            "content": "".join(self.content) or None,
            "refusal": "".join(self.refusal) or None,
            "tool_calls": [
                {
                    "id": slot["id"],
                    "type": "function",
                    "function": {"name": slot["name"], "arguments": slot["arguments"]},
                }
                for _, slot in sorted(self.tool_calls.items())
            ],
            "function_call": self.function_call,
        }

    def output(self) -> str:
        return "".join(self.text) if self.text else message_text(self.message())

    def ids(self) -> list[str]:
        return [
            slot["id"]
            for _, slot in sorted(self.tool_calls.items())
            if isinstance(slot["id"], str) and slot["id"]
        ]


def fill_from_sse(call: Call, raw: bytes, *, ended: bool) -> None:
    """Read a streamed answer into ``call``; ``ended`` says the byte stream ran to its end.

    A consumer that stops reading early (closes the stream) is not an error:
    what it read is what it used.
    """
    # One message per choice index: an n > 1 stream interleaves its choices' chunks.
    messages: dict[int, _StreamedMessage] = {}
    finished: set[int] = set()
    final: dict[str, Any] | None = None
    fingerprints: list[str] = []
    saw_event = saw_end = False
    for payload in sse_events(raw):
        if payload == "[DONE]":
            saw_end = True
            continue
        try:
            chunk = json.loads(payload)
        except ValueError:
            call.error = call.error or f"a stream event is not JSON (begins {begin(payload.encode())})"
            continue
        if not isinstance(chunk, dict):
            call.error = call.error or "a stream event is JSON but not an object"
            continue
        saw_event = True
        if chunk.get("error") or chunk.get("type") in _RESPONSES_FAILED:
            response: dict[str, Any] = chunk["response"] if isinstance(chunk.get("response"), dict) else {}
            error = chunk.get("error") or response.get("error") or chunk
            reason = error.get("message") if isinstance(error, dict) else error
            call.error = call.error or f"the stream carried an error, not a completion: {reason}"
            continue
        if chunk.get("type") in _RESPONSES_DONE and isinstance(chunk.get("response"), dict):
            saw_end = True
            final = chunk["response"]
            continue
        fingerprint = chunk.get("system_fingerprint")
        if fingerprint is not None and fingerprint not in fingerprints:
            fingerprints.append(fingerprint)
        if call.model is None and chunk.get("model"):
            call.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            call.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if isinstance(index, int) else 0
            if choice.get("finish_reason"):
                finished.add(index)
            messages.setdefault(index, _StreamedMessage()).add(choice)
    # Complete once every choice finished (or [DONE] came): one cut choice is a cut answer.
    saw_end = saw_end or (bool(finished) and messages.keys() <= finished)
    ordered = [messages[index] for index in sorted(messages)]
    message = messages.get(0) or _StreamedMessage()
    if not is_read(call.endpoint):
        call.error = None  # not ours to judge: recorded and replayed as it is
        call.output = message.output()
        return
    if call.error:  # broke off, or not the API's events: what arrived is not the model's output
        return
    if not saw_event:
        call.error = "the stream ended before any event arrived (not the API's server-sent events)"
        return
    if ended and not saw_end:
        end = "response.completed" if is_responses(call.endpoint) else "[DONE] or a finish_reason"
        call.error = f"the stream ended without its end ({end}): the answer is cut"
        return
    if final is not None:
        call.model = final.get("model") or call.model
        call.usage = final.get("usage") if isinstance(final.get("usage"), dict) else call.usage
        call.system_fingerprint = final.get("system_fingerprint")
        call.tool_call_ids = tuple(tool_call_ids(final))
        call.item_ids = tuple(item_ids(final))
        call.output = responses_text(final)
        return
    # A stream's fingerprint is the first non-null one among its chunks: vLLM
    # stamps only the last chunk, Azure's first chunk has none.
    call.system_fingerprint = fingerprints[0] if fingerprints else None
    call.chunk_fingerprints = tuple(fingerprints)
    call.tool_call_ids = tuple(tool_id for each in ordered for tool_id in each.ids())
    call.outputs = tuple(each.output() for each in ordered) if len(ordered) > 1 else ()
    call.output = message.output()
