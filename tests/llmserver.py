"""A deterministic, controllable OpenAI-compatible HTTP server for the project's own tests.

The plugin under test talks to OpenAI through the real ``openai`` SDK, so its tests need something that
speaks the real wire protocol (HTTP/1.1, JSON, gzip, server-sent events) but answers predictably and can
be made to misbehave on demand.  Mocking the SDK would test our assumptions about the SDK instead of the
SDK; this server lets the tests run the SDK for real against 127.0.0.1.

Everything the server says is a pure function of the request (see :func:`generate_text`), so a test can
compute the expected answer itself with :meth:`LLMServer.expected_text` without trusting the plugin.

Lifecycle: ``start()`` binds and serves in a daemon thread; ``stop()`` closes the listening socket and every
open client connection, so afterwards connections are refused.  ``start()`` may be called again after
``stop()`` (pass the old ``port`` to come back on the same port).  Stopping and restarting KEEPS the request
log and every knob; only :meth:`LLMServer.reset` clears them.

Injected faults (``fail_next``, ``hang_next``, ``cut_next_stream``) are queues: each call appends ``count``
entries, and each matching request consumes one entry, in the order the calls were made.  A single request
may consume a hang and a failure at once: it then sleeps first and fails afterwards.

Only the standard library is used, except pytest for the ``llm_server`` fixture.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip as gzip_module
import hashlib
import http.server
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
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
    "generate_text",
    "llm_server",
    "running_server",
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
KNOWN_PATHS = (*COMPLETION_PATHS, "/v1/models")

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
) -> str:
    """The answer for these inputs: a pure function, shared by the handler and ``expected_text``.

    Temperature is normalised to float so that ``0`` and ``0.0`` (which the SDK sends verbatim as
    different JSON) give the same answer, as they would on a real model.
    """
    key = _canonical_json(
        {
            "seed": seed,
            "temperature": None if temperature is None else float(temperature),
            "model": model,
            "messages": messages,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "variant": variant,
        }
    )
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big"))
    n_words = _word_count(max_tokens)
    parts: list[str] = []
    for index in range(n_words):
        if index > 0:
            parts.append("\n" if index % LINE_WORDS == 0 else " ")
        parts.append(rng.choice(VOCABULARY))
    return "".join(parts)


def value_for_schema(schema: Any, words: list[str], defs: Mapping[str, Any] | None = None) -> Any:
    """A value valid for a JSON schema (the subset pydantic and OpenAI tools use), drawn from ``words``.

    Deterministic: the same words give the same value, so tool arguments and structured answers change
    exactly when the generated text does (another seed, prompt or ``variant``).
    """
    defs = defs if defs is not None else (schema.get("$defs") or schema.get("definitions") or {})
    if not isinstance(schema, Mapping):
        return words[0] if words else "x"
    if "$ref" in schema:
        return value_for_schema(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), words, defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if not (isinstance(o, Mapping) and o.get("type") == "null")]
            return value_for_schema(options[0] if options else {}, words, defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    word = words[0] if words else "x"
    if kind == "string":
        return " ".join(words[:2]) or word
    if kind == "integer":
        return len(word)
    if kind == "number":
        return len(word) / 2
    if kind == "boolean":
        return True
    if kind == "array":
        return [value_for_schema(schema.get("items", {}), words, defs)]
    properties = schema.get("properties") or {}
    value: JSONObject = {}
    for index, (name, sub) in enumerate(properties.items()):
        rotated = words[index:] + words[:index]
        value[name] = value_for_schema(sub, rotated, defs)
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
        # Message dicts carry text in "content"; content parts and Responses input parts in "text".
        return sum(_count_words(value[key]) for key in ("content", "text") if key in value)
    return 0


@dataclasses.dataclass
class ReceivedRequest:
    """One request as it arrived, recorded before the server answers (also for failed/injected ones)."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: JSONObject | None  # parsed JSON object, or None when absent or not a JSON object
    raw_body: bytes
    query: str  # the raw query string, without "?"


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
class _Settings:
    """A consistent snapshot of the knobs for one request, taken under the lock.

    Tests flip knobs while requests are in flight; a snapshot keeps each single answer coherent.
    """

    fingerprint: str | None
    fingerprint_style: str
    variant: str
    model_override: str | None
    gzip: bool
    response_headers: dict[str, str]


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
        self._raw: collections.deque[_RawAnswer] = collections.deque()
        self._set_default_knobs()

    def _set_default_knobs(self) -> None:
        self.fingerprint: str | None = DEFAULT_FINGERPRINT
        self.fingerprint_style: str = "every"
        self.variant: str = ""
        self.model_override: str | None = None
        self.gzip: bool = True
        self.response_headers: dict[str, str] = default_response_headers()

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

    def cut_next_stream(self, after_chunks: int = 1, count: int = 1) -> None:
        """The next ``count`` streamed answers drop the connection after ``after_chunks`` data events."""
        with self._lock:
            self._cuts.extend([after_chunks] * count)

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
    ) -> str:
        """The text the server answers for these inputs under the current ``variant``.

        Chat: pass ``messages``.  Legacy completions: pass ``prompt``.  Responses API: pass
        ``seed=None`` and the string ``input`` as ``prompt`` (or a list ``input`` as ``messages``),
        ``max_output_tokens`` as ``max_tokens``.
        """
        return generate_text(
            seed=seed,
            model=model,
            temperature=temperature,
            # Plain dicts, so any Mapping (e.g. the SDK's TypedDicts) hashes exactly like the parsed JSON.
            messages=None if messages is None else [dict(message) for message in messages],
            prompt=prompt,
            max_tokens=max_tokens,
            variant=self.variant,
        )

    # ------------------------------------------------------------------------------ request handling

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _settings(self) -> _Settings:
        with self._lock:
            return _Settings(
                fingerprint=self.fingerprint,
                fingerprint_style=self.fingerprint_style,
                variant=self.variant,
                model_override=self.model_override,
                gzip=self.gzip,
                response_headers=dict(self.response_headers),
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
        if raw is not None:
            headers = {"Content-Type": raw.content_type, "Content-Length": str(len(raw.body))}
            self._send_headers(handler, settings, raw.status, headers)
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
            if request.body is None:
                raise _BadRequest("The request body must be a JSON object.")
            if request.path == "/v1/chat/completions":
                self._answer_chat(handler, settings, request, request.body)
            elif request.path == "/v1/completions":
                self._answer_completion(handler, settings, request, request.body)
            else:
                self._answer_responses(handler, settings, request, request.body)
        except _BadRequest as error:
            self._send_error(handler, settings, request, 400, str(error))

    def _answer_chat(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model, seed, temperature, max_tokens = _common_params(body)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise _BadRequest("'messages' is a required property and must be an array.")
        text = generate_text(
            seed=seed,
            model=model,
            temperature=temperature,
            messages=_without_tool_call_ids(messages),
            max_tokens=max_tokens,
            variant=settings.variant,
        )
        finish_reason = _finish_reason(max_tokens)
        usage = _usage(_count_words(messages), text)
        answer_model = settings.model_override or model
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        tool_calls = _tool_calls_for(body, messages, text)
        if tool_calls is not None:
            finish_reason = "tool_calls"
        content: str | None = None if tool_calls is not None else _structured(body, text)

        if not body.get("stream"):
            message: JSONObject = {"role": "assistant", "content": content, "refusal": None}
            if tool_calls is not None:
                message["tool_calls"] = tool_calls
            completion: JSONObject = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": answer_model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
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

        def choice(delta: JSONObject, finish: str | None = None) -> JSONObject:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        if tool_calls is not None:
            chunks = [chunk([choice({"role": "assistant", "content": None})])]
            for index, call in enumerate(tool_calls):
                head = {"index": index, "id": call["id"], "type": "function"}
                head["function"] = {"name": call["function"]["name"], "arguments": ""}
                chunks.append(chunk([choice({"tool_calls": [head]})]))
                arguments = call["function"]["arguments"]
                cut = max(1, len(arguments) // 2)
                for piece in (arguments[:cut], arguments[cut:]):
                    chunks.append(
                        chunk([choice({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})])
                    )
        else:
            assert content is not None
            chunks = [chunk([choice({"role": "assistant", "content": ""})])]
            chunks += [
                chunk([choice({"content": piece})]) for piece in _split_words_keeping_separators(content)
            ]
        chunks.append(chunk([choice({}, finish_reason)]))
        if include_usage:
            usage_chunk = chunk([])
            usage_chunk["usage"] = usage
            chunks.append(usage_chunk)
        _stamp_chunks(chunks, settings)
        self._send_stream(handler, settings, request, chunks)

    def _answer_completion(
        self, handler: _Handler, settings: _Settings, request: ReceivedRequest, body: JSONObject
    ) -> None:
        model, seed, temperature, max_tokens = _common_params(body)
        prompt = body.get("prompt")
        if not isinstance(prompt, (str, list)):
            raise _BadRequest("'prompt' is a required property and must be a string or an array.")
        text = generate_text(
            seed=seed,
            model=model,
            temperature=temperature,
            prompt=prompt,
            max_tokens=max_tokens,
            variant=settings.variant,
        )
        finish_reason = _finish_reason(max_tokens)
        usage = _usage(_count_words(prompt), text)
        answer_model = settings.model_override or model
        completion_id = f"cmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def completion(choice_text: str, finish: str | None) -> JSONObject:
            return {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": answer_model,
                "choices": [{"index": 0, "text": choice_text, "logprobs": None, "finish_reason": finish}],
            }

        if not body.get("stream"):
            whole = completion(text, finish_reason)
            whole["usage"] = usage
            _stamp_whole(whole, settings)
            self._send_json(handler, settings, request, 200, whole)
            return

        chunks = [completion(piece, None) for piece in _split_words_keeping_separators(text)]
        chunks.append(completion("", finish_reason))
        if _include_usage(body):
            usage_chunk = completion("", None)
            usage_chunk["choices"] = []
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
        if body.get("stream"):
            raise _BadRequest("llmserver does not implement streaming for the Responses API.")
        user_input = body.get("input")
        if not isinstance(user_input, (str, list)):
            raise _BadRequest("'input' is a required property and must be a string or an array.")
        temperature = _optional_number(body, "temperature")
        max_tokens = _optional_int(body, "max_output_tokens")
        # The Responses API has no seed; a string input hashes like a legacy prompt, a list like messages.
        text = generate_text(
            seed=None,
            model=model,
            temperature=temperature,
            messages=user_input if isinstance(user_input, list) else None,
            prompt=user_input if isinstance(user_input, str) else None,
            max_tokens=max_tokens,
            variant=settings.variant,
        )
        input_tokens = _count_words(user_input)
        output_tokens = len(text.split())
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
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{uuid.uuid4().hex}",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }
            ],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "temperature": temperature,
            "tool_choice": "auto",
            "tools": [],
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
        self._send_json(handler, settings, request, 200, response)

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
        self._send_headers(handler, settings, status, headers)
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
        """Send server-sent events with chunked transfer encoding, never compressed.

        Chunked encoding (rather than Connection: close) keeps the connection reusable and makes an
        abrupt cut detectable by the client as an incomplete body, which is what cut_next_stream is for.
        """
        with self._lock:
            cut_after = self._cuts.popleft() if self._cuts else None
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "Transfer-Encoding": "chunked",
        }
        self._send_headers(handler, settings, 200, headers)
        events = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
        events.append(b"data: [DONE]\n\n")
        # A cut stream never reaches [DONE], even if after_chunks exceeds the number of chunks.
        cut_at = None if cut_after is None else min(cut_after, len(chunks))
        for index, event in enumerate(events):
            if index == cut_at:
                raise _AbortConnection
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        handler.wfile.write(b"0\r\n\r\n")


def _tool_calls_for(body: JSONObject, messages: list[Any], text: str) -> list[JSONObject] | None:
    """Tool calls to answer with, or None for a text answer.

    With ``tools`` (and ``tool_choice`` not "none"), the model calls a tool until the conversation
    holds a tool result: the named ``tool_choice`` function, else the first tool, or one call to each
    tool when there are several and ``parallel_tool_calls`` is not false. Ids are fresh on every
    answer, as OpenAI's are; the arguments are a pure function of the generated text.
    """
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        tools = [t for t in tools if t["function"].get("name") == choice["function"].get("name")] or tools[:1]
    elif len(tools) < 2 or body.get("parallel_tool_calls") is False:
        tools = tools[:1]
    words = text.split()
    calls = []
    for index, tool in enumerate(tools):
        arguments = value_for_schema(tool["function"].get("parameters") or {}, words[index:] + words[:index])
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": tool["function"].get("name"), "arguments": json.dumps(arguments)},
            }
        )
    return calls


def _without_tool_call_ids(messages: list[Any]) -> list[Any]:
    """The conversation without the random tool call ids: answers depend on what was said, not on ids."""
    if not any(isinstance(m, dict) and (m.get("tool_calls") or m.get("tool_call_id")) for m in messages):
        return messages
    cleaned = []
    for message in messages:
        if isinstance(message, dict):
            message = {k: v for k, v in message.items() if k != "tool_call_id"}
            if isinstance(message.get("tool_calls"), list):
                message["tool_calls"] = [
                    {k: v for k, v in call.items() if k != "id"} if isinstance(call, dict) else call
                    for call in message["tool_calls"]
                ]
        cleaned.append(message)
    return cleaned


def _structured(body: JSONObject, text: str) -> str:
    """The content: ``text``, or a JSON text for ``response_format`` json_schema / json_object."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return text
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(value_for_schema(schema, text.split()))
    if response_format.get("type") == "json_object":
        return json.dumps({"answer": text})
    return text


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


def _include_usage(body: JSONObject) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage(prompt_tokens: int, text: str) -> JSONObject:
    completion_tokens = len(text.split())
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
