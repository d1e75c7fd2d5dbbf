"""What the plugin knows about one API call of a test, and the order calls are stored in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: Request paths whose bodies accept ``seed`` and therefore get pinned.
PINNED_PATH_SUFFIXES = ("/chat/completions", "/completions")
#: Request paths whose answers the plugin reads: a body it cannot read as a
#: complete answer is a broken call. Other endpoints (embeddings, models,
#: files, ...) are recorded and replayed as they are.
READ_PATH_SUFFIXES = (*PINNED_PATH_SUFFIXES, "/responses")


#: Error statuses that are problems, never answers, and never recorded:
#: transient ones (a recorded 429/5xx would replay a failure and make the SDK
#: sleep through its backoff) and 401/403/407, whose bodies can quote part of
#: the key. Other client errors (400, 404, 422, ...) are deterministic answers
#: to a bad request: recorded and replayed, so that a test of the app's error
#: handling works offline.
NEVER_RECORDED_4XX = frozenset({401, 403, 407, 408, 409, 425, 429})


def is_recorded_error(status: int) -> bool:
    """Whether an HTTP error status is a deterministic answer that is recorded (400, 404, 422, ...)."""
    return 400 <= status < 500 and status not in NEVER_RECORDED_4XX


def is_pinnable(path: str) -> bool:
    """Whether a request to ``path`` takes a seed (chat and legacy completions)."""
    return path.rstrip("/").endswith(PINNED_PATH_SUFFIXES)


def is_responses(path: str) -> bool:
    """Whether ``path`` is the Responses API (which takes no seed)."""
    return path.rstrip("/").endswith("/responses")


def is_read(path: str) -> bool:
    """Whether the plugin reads the answers of ``path`` (chat, legacy completions, Responses API)."""
    return path.rstrip("/").endswith(READ_PATH_SUFFIXES)


@dataclass
class Call:
    """One API call made while a ``seeded_llm`` test ran, in issue order.

    ``request`` is the JSON body as it was sent, after pinning. The response
    fields stay ``None`` until the answer (or, for a stream, its end) arrived.
    """

    index: int
    endpoint: str
    request: dict[str, Any]
    pinned: bool
    stream: bool
    output: str | None = None
    system_fingerprint: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    replayed: bool | None = None
    #: Distinct non-null fingerprints seen across a stream's chunks, in order of appearance.
    chunk_fingerprints: tuple[str, ...] = field(default_factory=tuple)
    #: Why the call has no usable answer (an API error, a cut stream, a body that is not the API's JSON).
    error: str | None = None
    #: The HTTP status of a recorded client error (400, 404, 422, ...); ``None`` for an answer.
    status: int | None = None
    #: The thread that made the call: calls from several threads have no reproducible issue order.
    thread: int = 0
    #: The ids the answer gave its tool calls (chat ``tool_calls[].id``, Responses API ``call_id``), in
    #: order; random per answer, so snapshots number them instead (``call_1``, ``call_2``, ...).
    tool_call_ids: tuple[str, ...] = ()
    #: The other ids the answer assigned (a Responses API response's ``id``, its output items'), in
    #: order; numbered by their prefix in snapshots (``resp_1``, ``msg_1``, ...).
    item_ids: tuple[str, ...] = ()
    #: Every choice's output text, by choice index, when the answer had more than one (``n > 1``);
    #: empty otherwise. ``output`` is choice 0's.
    outputs: tuple[str, ...] = ()
    #: ``--seedrepro-repeat``: the same request sent again, answers the test never saw.
    repeats: list[Call] = field(default_factory=list)
    #: The draw that made the call (``@pytest.mark.draws``, numbered from 0); None outside a draws test.
    draw: int | None = None

    @property
    def seed(self) -> Any:
        """The seed the request carried (``None`` for endpoints without one)."""
        return self.request.get("seed")

    @property
    def answered(self) -> bool:
        """Whether a complete, successful response was seen."""
        return self.output is not None

    @property
    def total_tokens(self) -> int:
        """Total tokens from ``usage``, 0 when the server reported none."""
        if not self.usage:
            return 0
        total = self.usage.get("total_tokens")
        if isinstance(total, int):
            return total
        parts = [
            self.usage.get(k) for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
        ]
        return sum(p for p in parts if isinstance(p, int))


def canonical(value: Any) -> str:
    """A JSON text of ``value`` that is the same whatever the order of its keys."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)


def from_threads(calls: list[Call]) -> bool:
    """Whether the calls came from more than one thread (their arrival order is then chance)."""
    return len({call.thread for call in calls}) > 1


def in_files_order(calls: list[Call]) -> list[Call]:
    """The order calls are stored in, in recordings and snapshots alike.

    Issue order when one thread made them all (``asyncio.gather`` included:
    coroutines start in the order they were given). Calls from several threads
    arrive in whatever order the threads ran, so they are stored by content
    (endpoint, request, answer), which two runs of the same test agree on.
    """
    if not from_threads(calls):
        return list(calls)
    return sorted(
        calls, key=lambda c: (c.draw or 0, c.endpoint, canonical(c.request), c.output or "", c.error or "")
    )


def sse_payload(line: str) -> str | None:
    """The payload of a server-sent-events ``data:`` line (``None`` for any other line).

    The one reading of SSE in the plugin: the stream observer parses what it
    returns, and recordings rewrite it (stable ids) line by line.
    """
    if not line.startswith("data:"):
        return None
    return line[5:].strip()
