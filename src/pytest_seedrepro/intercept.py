"""Seeing every OpenAI SDK request of a test: pin it on the way out, observe the answer.

The openai SDK is patched at two methods that exist with the same shape from
openai 1.x (httpx) to 3.x (httpx2):

- ``SyncAPIClient.request`` / ``AsyncAPIClient.request``: every API call enters
  here once (retries loop inside it). Pinning here, before the async client's
  first ``await``, makes ``Call.index`` the issue order even for calls fired
  together with ``asyncio.gather``.
- ``_process_response``: gets the final ``Response`` of a call. Its byte stream is
  teed, so what the caller reads (whole body or SSE stream) is also parsed into
  the ``Call``.

With ``--seedrepro-repeat=N`` a read call's N-1 repeats are sent together with
it (sync: one thread each; async: tasks on the running loop), their streams read
to the end, so N sends cost about one call's time; ``--seedrepro-repeat-serial``
sends them one at a time after it, its stream read to the end first.

Patching the classes, not a client, covers clients that the code under test
builds itself. The patches do nothing unless a ``seeded_llm`` test is running.
This module imports openai, so only the fixture imports it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import contextvars
import functools
import threading
import uuid
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pytest_seedrepro import answers, sdk
from pytest_seedrepro.calls import Call, is_read
from pytest_seedrepro.session import http_module

if TYPE_CHECKING:
    from openai._models import FinalRequestOptions

#: Prefix of the idempotency key the plugin gives a call that has none, so its
#: response can find its ``Call``. The SDK keeps the key across retries (one
#: call, one entry) and sends it only for clients with an idempotency header.
_KEY_PREFIX = "seedrepro-"


class ActiveTest:
    """The calls of the one test that is running in this process.

    pytest runs one test at a time per process (xdist uses processes), but the
    code under test may call the API from several threads, hence the lock.
    """

    def __init__(
        self,
        calls: list[Call],
        prepare_body: Callable[[str, dict[str, Any]], tuple[dict[str, Any], bool]],
        on_error: Callable[[Call, BaseException], BaseException | None],
        *,
        retries: bool = True,
        repeat: int = 1,
        repeat_serial: bool = False,
    ) -> None:
        self.calls = calls
        #: Streams being read; ``settle()`` parses those the code under test left unfinished.
        self.open_streams: list[_StreamSink] = []
        #: ``--seedrepro-repeat``: each read call is sent this many times in all.
        self.repeat = repeat
        #: ``--seedrepro-repeat-serial``: the repeats go one at a time, after the call, not together with it.
        self.repeat_serial = repeat_serial
        self._retries = retries
        self._prepare_body = prepare_body
        self._on_error = on_error
        self._lock = threading.Lock()
        self._by_key: dict[str, Call] = {}

    def failed(self, options: FinalRequestOptions, exc: BaseException) -> BaseException | None:
        """Note a call that raised; returns the exception to raise instead, if any."""
        call = self.call_for(options)
        return self._on_error(call, exc) if call is not None else None

    def before_request(
        self, options: FinalRequestOptions, *, repeat_of: Call | None = None
    ) -> FinalRequestOptions:
        """Pin the request and give it a :class:`Call` (a repeat's goes to ``repeat_of.repeats``)."""
        body = options.json_data
        if str(options.method).lower() == "get" or not isinstance(body, dict):
            return options
        options = sdk.load().model_copy(options)
        if options.extra_json:
            # extra_body would be merged over the pinned body when the SDK builds
            # the request; merge it first so pins and the recorded body agree.
            body = {**body, **options.extra_json}
            options.extra_json = None
        path = str(options.url)
        pinned_body, pinned = self._prepare_body(path, dict(body))
        options.json_data = pinned_body
        # Ask for gzip only: vcrpy decodes gzip into readable recordings but not
        # zstd/br, which httpx2 offers when their packages are installed.
        options.headers = {**(options.headers or {}), "Accept-Encoding": "gzip"}
        if options.idempotency_key is None or repeat_of is not None:
            options.idempotency_key = _KEY_PREFIX + uuid.uuid4().hex
        if not self._retries:
            # Replaying: a miss will not heal on retry, and openai 1.x would
            # otherwise sleep through its backoff before reporting it.
            options.max_retries = 0
        with self._lock:
            call = Call(
                index=len(self.calls) if repeat_of is None else repeat_of.index,
                endpoint=path,
                request=pinned_body,
                pinned=pinned,
                stream=bool(pinned_body.get("stream")),
                thread=threading.get_ident(),
            )
            if repeat_of is None:
                self.calls.append(call)
            else:
                repeat_of.repeats.append(call)
            self._by_key[options.idempotency_key] = call
        return options

    def repeats_due(self, call: Call | None) -> int:
        """How many more times ``call`` is to be sent (``--seedrepro-repeat``)."""
        if call is None or self.repeat < 2 or call.error or not is_read(call.endpoint):
            return 0
        return self.repeat - 1

    def repeat_failed(self, call: Call, number: int, exc: BaseException) -> None:
        call.error = call.error or f"repeat {number} of {self.repeat} failed: {type(exc).__name__}: {exc}"

    def repeat_sends(self, given: FinalRequestOptions, call: Call | None) -> list[FinalRequestOptions]:
        """The pinned requests of ``call``'s repeats, to send together with it (none when serial).

        All are pinned here, before anything is sent, in the calling thread and in
        order: request hooks run as they would one send after another, and
        ``call.repeats`` keeps the repeats' numbers whatever order they are answered in.
        """
        if self.repeat_serial:
            return []
        return [self.before_request(given, repeat_of=call) for _ in range(self.repeats_due(call))]

    def repeats_sent(
        self, call: Call | None, errors: Sequence[BaseException | None], *, answered: bool
    ) -> None:
        """Settle the repeats that went together with ``call``: what one send after another would leave.

        ``errors`` holds each repeat's exception (``None``: it was answered), in
        order. A call that raised or has no usable answer gets no repeats at all,
        as it would have got none sent after it: its figures would compare nothing.
        """
        if call is None or not errors:
            return
        if not answered or not self.repeats_due(call):
            call.repeats.clear()
            return
        for number, exc in enumerate(errors, start=2):
            if exc is not None:
                self.repeat_failed(call, number, exc)

    def settle(self) -> None:
        """Parse what arrived of every stream the code under test neither read to its end nor closed.

        An older SDK that meets an event it cannot parse raises without closing
        the stream: what arrived must still be judged.
        """
        for sink in self.open_streams:
            sink.finish(ended=False)
        self.open_streams.clear()

    def call_for(self, options: FinalRequestOptions) -> Call | None:
        key = options.idempotency_key
        return self._by_key.get(key) if key else None


#: The call whose request the SDK is sending in this thread or task (asyncio
#: tasks each have their own context, so gathered calls do not mix).
_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("seedrepro_current_call", default=None)


def note_replayed() -> None:
    """Mark the call being sent as answered from the recording (called by the recording layer).

    That, not the look of the response, says a call was replayed: a response
    from a mock transport or a proxy is live whatever it carries.
    """
    call = _current.get()
    if call is not None:
        call.replayed = True


#: What the plugin says of a stream or call that ``asyncio`` cancelled before its answer was whole.
CANCELLED = (
    "cancelled before its answer was whole (asyncio.CancelledError: a wait_for or a task's timeout): "
    "an unfinished answer is never recorded nor snapshotted; let it finish, or give the call a longer timeout"
)


class CallAfterTest(RuntimeError):
    """An API call from a thread of a ``seeded_llm`` test once that test was over: never sent."""


#: Threads a ``seeded_llm`` test started and left running, with the test's node id and where to report
#: a call they make once it is over. Weak: a thread that ends drops out.
_late_threads: weakref.WeakKeyDictionary[threading.Thread, tuple[str, Callable[[str], None]]] = (
    weakref.WeakKeyDictionary()
)


def watch_threads_left(
    started_before: set[threading.Thread], nodeid: str, report: Callable[[str], None]
) -> None:
    """Note the threads alive now that were not before the test began: a call they make later is refused.

    Called when the test ends. A thread that was alive before the test (a pool
    thread another test started) is not this test's, so it is never blamed.
    """
    for thread in threading.enumerate():
        if thread not in started_before and thread.is_alive():
            _late_threads[thread] = (nodeid, report)


def _refuse_late_call(options: FinalRequestOptions, *, another_test_runs: bool) -> None:
    """Raise for a call from a thread a finished test left running.

    Also while another test runs: the thread's call is not that test's, and
    giving it to that test would record and snapshot a call whose timing
    decides whether it happens. Only a pool's worker (an executor's, or a
    ``Thread`` subclass such as anyio's) may serve any test, so its calls
    belong to the test that runs.
    """
    thread = threading.current_thread()
    owner = _late_threads.get(thread)
    if owner is None:
        return
    if another_test_runs and (
        type(thread) is not threading.Thread
        or getattr(thread, "_target", None) is concurrent.futures.thread._worker
    ):
        return
    nodeid, report = owner
    line = (
        f"seedrepro: a thread started by {nodeid} called {str(options.method).upper()} {options.url} "
        "after the test ended"
    )
    report(line)
    raise CallAfterTest(f"{line}: nothing was sent; wait for the thread before the test returns")


#: The running test, or None between tests. A module global on purpose: the SDK
#: code that reaches the patches has no path back to pytest's config or stash.
_active: ActiveTest | None = None
_originals: dict[tuple[type, str], Any] = {}


def activate(test: ActiveTest | None) -> None:
    """Route SDK traffic to ``test`` (or stop, with ``None``)."""
    global _active
    _active = test


def is_active() -> bool:
    """Whether a test (or a fixture of one) is routing SDK traffic now."""
    return _active is not None


def install() -> None:
    """Patch the SDK's client base classes once per process (idempotent)."""
    if _originals:
        return
    loaded = sdk.load()
    sync_cls, async_cls = loaded.sync_client, loaded.async_client
    sync_request, async_request = sync_cls.request, async_cls.request
    sync_process, async_process = sync_cls._process_response, async_cls._process_response

    def request(self: Any, cast_to: Any, options: FinalRequestOptions, *args: Any, **kwargs: Any) -> Any:
        test = _active
        if _late_threads:
            _refuse_late_call(options, another_test_runs=test is not None)
        if test is None:
            return sync_request(self, cast_to, options, *args, **kwargs)
        given, options = options, test.before_request(options)
        call = test.call_for(options)
        sends = test.repeat_sends(given, call)
        together = _RepeatThreads(
            lambda again: sync_request(self, cast_to, again, *args, **kwargs),
            sends,
            bool(call and call.stream),
        )
        token = _current.set(call)
        try:
            result = sync_request(self, cast_to, options, *args, **kwargs)
        except Exception as exc:
            replacement = test.failed(options, exc)
            test.repeats_sent(call, together.join(), answered=False)
            if replacement is None:
                raise
            raise replacement from None
        finally:
            _current.reset(token)
        if sends:
            test.repeats_sent(call, together.join(), answered=True)
            return result
        if call is not None and call.stream and test.repeats_due(call):
            _read_ahead(result)  # one at a time: the first answer is whole before a repeat is sent
        for number in range(2, 2 + test.repeats_due(call)):
            assert call is not None
            try:  # the same request again; the test only ever sees the first answer
                again = sync_request(
                    self, cast_to, test.before_request(given, repeat_of=call), *args, **kwargs
                )
                for _ in again if call.stream else ():
                    pass
            except Exception as exc:
                test.repeat_failed(call, number, exc)
        return result

    async def arequest(
        self: Any, cast_to: Any, options: FinalRequestOptions, *args: Any, **kwargs: Any
    ) -> Any:
        test = _active
        if _late_threads:
            _refuse_late_call(options, another_test_runs=test is not None)
        if test is None:
            return await async_request(self, cast_to, options, *args, **kwargs)
        given, options = options, test.before_request(options)
        call = test.call_for(options)
        # Tasks need asyncio's loop (another event loop, e.g. trio's, gets its repeats one at a time).
        sends = test.repeat_sends(given, call) if _asyncio_running() else []
        stream = bool(call and call.stream)
        tasks = [
            asyncio.ensure_future(
                _send_repeat(functools.partial(async_request, self, cast_to, again, *args, **kwargs), stream)
            )
            for again in sends
        ]
        token = _current.set(call)
        try:
            result = await async_request(self, cast_to, options, *args, **kwargs)
        except Exception as exc:
            replacement = test.failed(options, exc)
            test.repeats_sent(call, await asyncio.gather(*tasks), answered=False)
            if replacement is None:
                raise
            raise replacement from None
        except asyncio.CancelledError:
            # Cancelled while the answer was on its way (when recording, vcrpy reads
            # a whole stream here): no answer, and nothing of it is recorded.
            if call is not None:
                call.error = call.error or CANCELLED
            await _cancel(tasks)
            test.repeats_sent(call, [None] * len(tasks), answered=False)
            raise
        finally:
            _current.reset(token)
        if tasks:
            try:
                errors = await asyncio.gather(*tasks)
            except asyncio.CancelledError:
                # The caller gave up while the repeats were on their way (gather cancelled
                # them): the call never returned, and half its repeats are no figures.
                test.repeats_sent(call, [None] * len(tasks), answered=False)
                raise
            test.repeats_sent(call, errors, answered=True)
            return result
        if call is not None and call.stream and test.repeats_due(call):
            await _aread_ahead(result)  # one at a time: the first answer is whole before a repeat is sent
        for number in range(2, 2 + test.repeats_due(call)):
            assert call is not None
            try:
                again = await async_request(
                    self, cast_to, test.before_request(given, repeat_of=call), *args, **kwargs
                )
                if call.stream:
                    async for _ in again:
                        pass
            except Exception as exc:
                test.repeat_failed(call, number, exc)
        return result

    def process_response(self: Any, **kwargs: Any) -> Any:
        _observe(kwargs["options"], kwargs["response"], kwargs.get("stream", False), is_async=False)
        return sync_process(self, **kwargs)

    async def aprocess_response(self: Any, **kwargs: Any) -> Any:
        _observe(kwargs["options"], kwargs["response"], kwargs.get("stream", False), is_async=True)
        return await async_process(self, **kwargs)

    for cls, name, new in (
        (sync_cls, "request", request),
        (async_cls, "request", arequest),
        (sync_cls, "_process_response", process_response),
        (async_cls, "_process_response", aprocess_response),
    ):
        _originals[(cls, name)] = cls.__dict__[name]
        setattr(cls, name, new)


def uninstall() -> None:
    """Undo :func:`install`."""
    for (cls, name), original in _originals.items():
        setattr(cls, name, original)
    _originals.clear()


class _RepeatThreads:
    """A call's repeats, each sent from a thread of its own while the call itself is sent.

    Threads, not a pool: they end with the call, so none is left running when
    the test ends (a thread a test leaves behind may not call the API).
    """

    def __init__(self, send: Callable[[FinalRequestOptions], Any], sends: list[Any], stream: bool) -> None:
        self.errors: list[BaseException | None] = [None] * len(sends)
        self.threads = [
            threading.Thread(
                target=self._run, args=(number, send, again, stream), name="seedrepro-repeat", daemon=True
            )
            for number, again in enumerate(sends)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, number: int, send: Callable[[FinalRequestOptions], Any], again: Any, stream: bool) -> None:
        try:
            answer = send(again)
            for _ in answer if stream else ():  # read to its end: the answer is all of the stream
                pass
        except Exception as exc:
            self.errors[number] = exc

    def join(self) -> list[BaseException | None]:
        """Wait for every repeat; each one's exception (``None``: answered), in order."""
        for thread in self.threads:
            thread.join()
        return self.errors


async def _send_repeat(send: Callable[[], Any], stream: bool) -> BaseException | None:
    """Send one repeat (a task of its own) and read its stream to the end; its exception, if any."""
    _current.set(None)  # the task's own copy of the context: the call being sent is not this one
    try:
        answer = await send()
        if stream:
            async for _ in answer:
                pass
    except Exception as exc:
        return exc
    return None


async def _cancel(tasks: Sequence[asyncio.Future[BaseException | None]]) -> None:
    """Cancel the repeats of a cancelled call and let them end, so no task outlives the test."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)


def _asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _read_ahead(result: Any) -> None:
    """Read a streamed answer's bytes to their end now; the caller reads them later as they came.

    A server that batches requests must be done with the call before a repeat
    sent one at a time arrives. A stream that broke off breaks off again, at the
    same byte, when the caller reads it.
    """
    response: Any = getattr(result, "response", None)
    inner = getattr(response, "stream", None)
    if inner is None:
        return
    parts: list[bytes] = []
    error: Exception | None = None
    try:
        for part in inner:
            parts.append(part)
    except Exception as exc:
        error = exc
    base = http_module(type(response)).SyncByteStream
    response.stream = _replay_class(base, False)(inner, parts, error)


async def _aread_ahead(result: Any) -> None:
    """:func:`_read_ahead` for an async stream."""
    response: Any = getattr(result, "response", None)
    inner = getattr(response, "stream", None)
    if inner is None:
        return
    parts: list[bytes] = []
    error: Exception | None = None
    try:
        async for part in inner:
            parts.append(part)
    except Exception as exc:
        error = exc
    base = http_module(type(response)).AsyncByteStream
    response.stream = _replay_class(base, True)(inner, parts, error)


@functools.cache
def _replay_class(base: type, is_async: bool) -> type:
    """A byte stream of ``base``'s module that gives what was read ahead, then its error, if any."""

    class SyncReplay(base):  # type: ignore[misc]
        def __init__(self, inner: Any, parts: list[bytes], error: Exception | None) -> None:
            self._inner, self._parts, self._error = inner, parts, error

        def __iter__(self) -> Iterator[bytes]:
            yield from self._parts
            if self._error is not None:
                raise self._error

        def close(self) -> None:
            self._inner.close()

    class AsyncReplay(base):  # type: ignore[misc]
        def __init__(self, inner: Any, parts: list[bytes], error: Exception | None) -> None:
            self._inner, self._parts, self._error = inner, parts, error

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for part in self._parts:
                yield part
            if self._error is not None:
                raise self._error

        async def aclose(self) -> None:
            await self._inner.aclose()

    return AsyncReplay if is_async else SyncReplay


def _observe(options: FinalRequestOptions, response: Any, stream: bool, *, is_async: bool) -> None:
    test = _active
    call = test.call_for(options) if test is not None else None
    if call is None:
        return
    if call.replayed is None:
        call.replayed = False  # note_replayed() marks what the recording answered
    if not stream and not call.stream:
        try:
            response.read()
        except Exception as exc:  # the SDK will raise its own error; keep ours on the call
            call.error = f"the answer could not be read: {type(exc).__name__}: {exc}"
            return
        answers.fill_from_body(call, response.content, response.headers.get("content-type", ""))
        return
    httpx_module = http_module(type(response))
    encoding = response.headers.get("content-encoding", "")
    sink = _StreamSink(call, encoding)
    if test is not None:
        test.open_streams.append(sink)
    inner = response.stream
    base = httpx_module.AsyncByteStream if is_async else httpx_module.SyncByteStream
    response.stream = _tee_class(base, is_async)(inner, sink)


class _StreamSink:
    """Collects a stream's raw bytes; parses them once, when the stream ends or closes."""

    def __init__(self, call: Call, encoding: str) -> None:
        self.call = call
        self.parts: list[bytes] = []
        self.done = False
        #: A pass over the byte stream began: only the first one is copied.
        self.teeing = False
        self._gzip = "gzip" in encoding

    def fail(self, exc: BaseException) -> None:
        self.call.error = f"the stream broke off: {type(exc).__name__}: {exc}"
        self.finish(ended=False)

    def cancel(self) -> None:
        """The stream was cancelled while waiting for more: unfinished, unlike a consumer that closed it."""
        self.call.error = self.call.error or f"the stream was {CANCELLED}"
        self.finish(ended=False)

    def finish(self, *, ended: bool) -> None:
        """Parse what arrived; ``ended`` says the server's byte stream ran to its end.

        A consumer that stops reading early (closes the stream) is not an
        error: what it read is what it used.
        """
        if self.done:
            return
        self.done = True
        raw = b"".join(self.parts)
        if self._gzip:
            try:
                raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)
            except zlib.error:
                pass
        answers.fill_from_sse(self.call, raw, ended=ended)


@functools.cache
def _tee_class(base: type, is_async: bool) -> type:
    """A byte stream of ``base``'s module (httpx or httpx2) that copies what passes to a sink."""

    class SyncTee(base):  # type: ignore[misc]
        def __init__(self, inner: Any, sink: _StreamSink) -> None:
            self._inner, self._sink = inner, sink

        def __iter__(self) -> Iterator[bytes]:
            if self._sink.teeing:
                # Read again (openai 3.x drains a finished stream; a recorded stream
                # yields its bytes anew): the answer was read once already.
                yield from self._inner
                return
            self._sink.teeing = True
            try:
                for part in self._inner:
                    self._sink.parts.append(part)
                    yield part
            except Exception as exc:
                self._sink.fail(exc)
                raise
            self._sink.finish(ended=True)

        def close(self) -> None:
            self._sink.finish(ended=False)
            self._inner.close()

    class AsyncTee(base):  # type: ignore[misc]
        def __init__(self, inner: Any, sink: _StreamSink) -> None:
            self._inner, self._sink = inner, sink

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self._sink.teeing:
                # Read again: see SyncTee.__iter__.
                async for part in self._inner:
                    yield part
                return
            self._sink.teeing = True
            try:
                async for part in self._inner:
                    self._sink.parts.append(part)
                    yield part
            except Exception as exc:
                self._sink.fail(exc)
                raise
            except asyncio.CancelledError:
                # A BaseException: a consumer that gives up (wait_for) did not read
                # the answer to its end. Closing early (aclose) raises GeneratorExit
                # at the yield instead, and stays what it read.
                self._sink.cancel()
                raise
            self._sink.finish(ended=True)

        async def aclose(self) -> None:
            self._sink.finish(ended=False)
            await self._inner.aclose()

    return AsyncTee if is_async else SyncTee
