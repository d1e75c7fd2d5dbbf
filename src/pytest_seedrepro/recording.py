"""Recordings: one vcrpy cassette per test, matched on the body, safe to commit.

Everything the plugin knows about recordings lives here: where a test's
cassette is, what of an exchange is kept (no secrets, no transient errors),
how a missing recording is explained, and that a recording holds what its
test used, written only once the whole test is over and accepted.

This module imports vcrpy, so only the fixture imports it. The vcrpy
internals it uses are listed, and checked at first use, in ``vcrpy_check``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from vcr.cassette import Cassette
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError
from vcr.serialize import deserialize, serialize

from pytest_seedrepro.calls import (
    Call,
    canonical,
    from_threads,
    in_files_order,
    is_recorded_error,
    sse_payload,
)
from pytest_seedrepro.files import (
    NotWritten,
    UnreadableFile,
    own_stem,
    read_text,
    write_atomically,
    yaml_problem,
)
from pytest_seedrepro.ids import stable_ids
from pytest_seedrepro.options import record_command

#: seedrepro mode -> vcrpy record mode. ``live`` records every exchange and replays none; its
#: recording is never written by the run, only kept for ``seedrepro accept`` (``review.py``).
RECORD_MODES = {"replay": "none", "record": "new_episodes", "rerecord": "all", "live": "all"}

#: The request and response headers a recording keeps. An allow-list, not a
#: blocklist: Authorization, api-key, OpenAI-Organization/-Project, cookies,
#: x-stainless-* and user-agent (which changes with every SDK upgrade) can
#: never reach the file, nor any header a provider adds tomorrow.
KEPT_REQUEST_HEADERS = frozenset({"content-type", "accept"})
KEPT_RESPONSE_HEADERS = frozenset({"content-type"})
#: A query parameter is dropped from the recording, and from requests before
#: they are matched, when a word of its name (split at separators and camel
#: case: ``api-key``, ``sessionToken``, ``X-Amz-Signature``) is one of these,
#: or one of them glued to a qualifier (``apikey``, ``accesstoken``). Whole
#: words only: ``max_tokens``, ``author``, ``keywords`` are ordinary parameters.
_CREDENTIAL_WORDS = frozenset(
    {"key", "token", "secret", "password", "passwd", "pwd", "passphrase", "sig", "signature"}
    | {"credential", "credentials", "auth", "authorization", "bearer", "jwt", "cookie"}
    # A session id in a URL is a bearer credential: dropping an ordinary one costs only matching on it.
    | {"session", "sessionid"}
)
_CREDENTIAL_QUALIFIERS = ("api", "access", "auth", "session", "client", "secret", "private", "subscription")
_GLUED_CREDENTIALS = frozenset(
    q + w for q in _CREDENTIAL_QUALIFIERS for w in ("key", "token", "secret", "sig", "signature")
)
#: Words of a name: lower-case runs, capitalised words, acronyms (``APIKey`` -> API, Key), digits.
_NAME_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
#: Per-request wall-clock measurements some servers add (llama.cpp's
#: llama-server: ``timings``); no SDK reads them and they change every run.
_TIMING_KEYS = ("timings",)
#: Completion objects, whose bodies lose their timings and are stored readable (not ASCII-escaped).
_COMPLETION_OBJECTS = frozenset({"chat.completion", "chat.completion.chunk", "text_completion"})
#: The id earlier versions gave every recorded completion (``chatcmpl-recorded``,
#: ``cmpl-recorded``), as they wrote it; replay gives such an answer an id of its own.
_LEGACY_ID = re.compile(rb'"id": "(chatcmpl|cmpl)-recorded"')
_MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "body")


class _PureDumper(yaml.Dumper):
    """vcrpy's YAML dumper with PyYAML's own emitter, never libyaml's.

    vcrpy dumps through libyaml's ``CDumper`` when it is installed, and the two
    emitters fold long escaped lines differently (non-ASCII text, ``\\r\\n``):
    the same cassette would be other bytes on another machine. The
    representers are the same classes, so only the layout can differ.
    """


class CassetteSerializer:
    """vcrpy's serializer interface: cassettes written byte-identical on every machine.

    Reading keeps vcrpy's own safe loader (libyaml's when present): it only
    has to give the same values back.
    """

    @staticmethod
    def serialize(cassette_dict: dict[str, Any]) -> str:
        """The cassette's YAML text, from PyYAML's pure-Python emitter."""
        return str(yaml.dump(cassette_dict, Dumper=_PureDumper))

    @staticmethod
    def deserialize(cassette_string: str) -> Any:
        """The cassette's data, read by vcrpy's safe loader."""
        from vcr.serializers import yamlserializer

        return yamlserializer.deserialize(cassette_string)


class MissingRecording(Exception):
    """A request in ``replay`` mode that no recording answers."""


class CorruptRecording(Exception):
    """A cassette file exists but cannot be read; the message names the file and what to do."""


def cassette_path(test_path: Path, nodeid: str, cassette_dir: str) -> Path:
    """``<test dir>/<cassette dir>/<module>/<Class.test_name[params]>.yaml``, one file per test.

    A name the sanitising changed (``test[a b]`` -> ``test[a_b]``) or cut ends
    in ``-`` and 8 hex digits of the node id (``files.own_stem``), so it never
    folds into another test's file.
    """
    parts = nodeid.split("::")[1:]
    original = ".".join(parts)
    name = re.sub(r"[^\w.\[\]=,+-]+", "_", original)
    stem = own_stem(name, original, nodeid, ".yaml")
    return test_path.parent / cassette_dir / test_path.stem / f"{stem}.yaml"


class Recording:
    """A test's cassette: vcrpy's persister, holding the save until the test is over.

    vcrpy saves a cassette when its context exits, in the fixture's tear-down,
    before the test's other fixtures are torn down. Here what the test used is
    only kept (:meth:`keep_used`); :meth:`write` writes it once the whole test
    is over and ``decision.decide`` accepted the run, and is never called
    otherwise, so the previous recording stays byte for byte. Entries are put
    in the order of the test's calls (issue order; by content for calls from
    threads), so neither ``asyncio.gather`` nor thread timing reorders the file.
    """

    def __init__(self, path: Path, calls: list[Call], *, ignore_existing: bool, nodeid: str = "") -> None:
        self.path = path
        self.calls = calls
        self.ignore_existing = ignore_existing
        #: The test's node id, from which the ids stored for the server's are derived.
        self.nodeid = nodeid
        self._pending: tuple[dict[str, Any], Any] | None = None

    # vcrpy's persister interface --------------------------------------------------------------

    def load_cassette(self, cassette_path: str | Path, serializer: Any) -> Any:
        if self.ignore_existing:
            raise CassetteNotFoundError()
        path = Path(cassette_path)
        try:
            text = read_text(path, what="the recording")
        except UnreadableFile as exc:
            raise CorruptRecording(str(exc)) from None
        if text is None or not text.strip():
            raise CassetteNotFoundError()  # vcrpy's rule: an empty file is a missing recording
        try:
            return deserialize(text, serializer)
        except Exception as exc:  # yaml errors, a foreign or truncated file, an old format
            from yaml import YAMLError  # vcrpy's serializer is PyYAML's

            if isinstance(exc, YAMLError):
                cause = f"not valid YAML ({yaml_problem(exc)})"
            elif isinstance(exc, ValueError):  # vcrpy's own words: an old format, an unknown tag
                cause = f"not a vcrpy cassette ({yaml_problem(exc)})"
            else:  # valid YAML of another shape: a list, a snapshot copied over it
                cause = "not a vcrpy cassette (expected a mapping with an 'interactions' list)"
            raise CorruptRecording(f"cannot read the recording {path}: {cause}") from None

    def save_cassette(
        self, cassette_path: str | Path, cassette_dict: dict[str, Any], serializer: Any
    ) -> None:
        # vcrpy's own save, should anything call it; open_cassette hands over keep_used's instead.
        self._pending = (cassette_dict, serializer)

    # the end of the test ----------------------------------------------------------------------

    def keep_used(self, cassette: Any, loaded: int, serializer: Any) -> None:
        """Hold what the test used: the loaded interactions it replayed and those recorded now, only.

        Stands in for vcrpy's save, which keeps every loaded interaction (a
        changed prompt's old answer would stay in ``record`` forever), and whose
        ``drop_unused_requests`` drops an interaction recorded now whose request
        matches a loaded one (a test that asks the same thing twice).
        ``loaded``: how many of ``cassette.data`` came from the file.
        """
        data = cassette.data
        used = [pair for index, pair in enumerate(data[:loaded]) if cassette.play_counts[index]]
        used += data[loaded:]
        if self.ignore_existing:
            changed = bool(used) or self.path.exists()  # rerecord did not read the file: it may hold anything
        else:
            changed = len(used) != loaded or len(data) != loaded
        if changed:
            interactions = {"requests": [p[0] for p in used], "responses": [p[1] for p in used]}
            self._pending = (interactions, serializer)

    @property
    def has_changes(self) -> bool:
        """Whether the file would change: interactions recorded now, or loaded ones no longer used."""
        return self._pending is not None

    def write(self) -> None:
        """Write what the test used, atomically; ``files.NotWritten`` names the file and the reason.

        A test that used nothing has no recording: the file is removed.
        """
        if self._pending is None:
            return
        text = self.text()
        self._pending = None
        if text is None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                raise NotWritten(f"cannot remove the recording {self.path}: {exc.strerror or exc}") from None
            return
        write_atomically(self.path, text, what="the recording")

    def text(self) -> str | None:
        """The text :meth:`write` would write, byte for byte; None when it would remove the file.

        Only meaningful while :attr:`has_changes`; ``seedrepro review`` keeps it for a later accept.
        """
        if self._pending is None:
            return None
        cassette_dict, serializer = self._pending
        if not cassette_dict["requests"]:
            return None
        return str(
            serialize(_with_stable_ids(_in_files_order(cassette_dict, self.calls), self.nodeid), serializer)
        )


def _in_files_order(cassette_dict: dict[str, Any], calls: list[Call]) -> dict[str, Any]:
    pairs = list(zip(cassette_dict["requests"], cassette_dict["responses"], strict=True))
    ordered = in_files_order(calls)
    if from_threads(calls):
        # Calls from threads may repeat one request, in any order: the answer
        # decides which of them each recording stands beside.
        pairs.sort(key=lambda pair: _response_text(pair[1]))
    # Otherwise a request the test repeats was recorded (or replayed) in the
    # order the test made it: each recording takes the next such call's place.
    taken: set[int] = set()

    def position(pair: tuple[Any, Any]) -> tuple[int, str, str]:
        request, response = pair
        body = _json_or_none(request.body)
        draw = draw_tag(request.uri)  # a draws test's identical requests: each stands beside its own draw's
        first = None
        for index, call in enumerate(ordered):
            if (
                body == call.request
                and request.path.endswith(call.endpoint)
                and (draw is None or call.draw == draw)
            ):
                if index not in taken:
                    taken.add(index)
                    return index, "", _response_text(response)
                first = index if first is None else first
        if first is not None:
            return first, "", _response_text(response)
        return len(ordered), canonical(body), _response_text(response)

    placed = sorted(((position(pair), pair) for pair in pairs), key=lambda placed: placed[0])
    return {
        **cassette_dict,
        "requests": [pair[0] for _, pair in placed],
        "responses": [pair[1] for _, pair in placed],
    }


def _with_stable_ids(cassette_dict: dict[str, Any], nodeid: str) -> dict[str, Any]:
    """The cassette with the server's ids numbered for the test (``ids.stable_ids``), in file order.

    Servers hand out new ids on every answer: stored as they came, every
    re-recording and every xdist run would rewrite the file. Requests and
    responses that change are copies; vcrpy's own objects stay as they were.
    """
    requests, responses = cassette_dict["requests"], cassette_dict["responses"]
    bodies = [request.body for request in requests]
    answers = [_body_string(response) for response in responses]
    numbered = stable_ids(
        [
            (request.uri, body, answer)
            for request, body, answer in zip(requests, bodies, answers, strict=True)
        ],
        nodeid,
    )
    stored_requests, stored_responses = [], []
    for request, response, body, answer, (new_uri, new_body, new_answer) in zip(
        requests, responses, bodies, answers, numbered, strict=True
    ):
        if new_uri is not request.uri or new_body is not body:
            request = copy.copy(request)
            if new_uri is not request.uri:
                request.uri = new_uri
            if new_body is not body:
                request.body = new_body
        if new_answer is not answer:
            response = {**response, "body": {**response["body"], "string": new_answer}}
        stored_requests.append(request)
        stored_responses.append(response)
    return {**cassette_dict, "requests": stored_requests, "responses": stored_responses}


def _body_string(response: dict[str, Any]) -> Any:
    body = response.get("body")
    return body.get("string") if isinstance(body, dict) else None


def _json_or_none(body: Any) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def _response_text(response: dict[str, Any]) -> str:
    body = response.get("body", {}).get("string", b"")
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else str(body)


def is_credential_name(name: str) -> bool:
    """Whether a query parameter's name says it carries a secret (``api-key``, ``sig``, ``sessionToken``)."""
    return any(
        word in _CREDENTIAL_WORDS or word in _GLUED_CREDENTIALS
        for word in (match.lower() for match in _NAME_WORDS.findall(name))
    )


def _scrub_request(request: Any) -> Any:
    for name in list(request.headers):
        if name.lower() not in KEPT_REQUEST_HEADERS:
            del request.headers[name]
    _fix_multipart_boundary(request)
    parts = urlsplit(request.uri)
    if parts.query:
        query = [
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_credential_name(k)
        ]
        request.uri = urlunsplit(parts._replace(query=urlencode(query)))
    return request


#: The boundary every stored multipart body is written with. httpx draws a random
#: one per request (uploads: transcriptions, files, image edits), so the same
#: upload never matched its recording and each ``record`` run appended a copy.
MULTIPART_BOUNDARY = "seedrepro-multipart-boundary"
_BOUNDARY = re.compile(r'(boundary=)("?)([^";,\s]+)("?)', re.IGNORECASE)


def _fix_multipart_boundary(request: Any) -> None:
    """Give a multipart request the fixed boundary, in its content-type and its body alike.

    vcrpy passes a request through this filter before matching it too, so the
    stored request and every later one compare equal when their parts are.
    Only the delimiter lines change (``--boundary``), never a part's bytes: a
    binary upload round-trips as it was sent.
    """
    content_type = request.headers.get("content-type") or request.headers.get("Content-Type")
    if not content_type or not content_type.lower().startswith("multipart/"):
        return
    found = _BOUNDARY.search(content_type)
    body = request.body
    if found is None or found.group(3) == MULTIPART_BOUNDARY or not isinstance(body, bytes):
        return
    old = b"--" + found.group(3).encode("latin-1")
    new = b"--" + MULTIPART_BOUNDARY.encode("ascii")
    # Each delimiter starts the body or a line; replacing only those leaves part contents alone.
    if body.startswith(old):
        body = new + body[len(old) :]
    request.body = body.replace(b"\r\n" + old, b"\r\n" + new)
    fixed = content_type[: found.start(2)] + MULTIPART_BOUNDARY + content_type[found.end(4) :]
    for name in list(request.headers):
        if name.lower() == "content-type":
            request.headers[name] = fixed


def _scrub_response(response: dict[str, Any]) -> dict[str, Any] | None:
    status = response["status"]["code"]
    if status >= 400 and not is_recorded_error(status):
        return None  # transient, or may quote the key (calls.NEVER_RECORDED_4XX)
    response["headers"] = {
        name: value for name, value in response["headers"].items() if name.lower() in KEPT_RESPONSE_HEADERS
    }
    body = response["body"].get("string")
    if isinstance(body, bytes | str):
        response["body"]["string"] = _stable_body(body if isinstance(body, bytes) else body.encode())
    return response


def _stable_body(body: bytes) -> bytes:
    """A completion's body without its wall-clock ``timings``; ids and ``created`` stay as they came here.

    The app may send an id back (a tool call's id, a Responses API
    ``previous_response_id``) later in the same test: the whole recording is
    numbered at once when it is written (:func:`_with_stable_ids`), in the
    requests and responses alike, so replay matches what it recorded.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body  # not text: kept as it came (the answer is reported broken anyway)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _stable_json(stripped).encode("utf-8")
    if "data:" not in text:
        return body
    lines = []
    for line in text.split("\n"):
        payload = sse_payload(line)
        if payload and payload.startswith("{"):
            line = "data: " + _stable_json(payload)
        lines.append(line)
    return "\n".join(lines).encode("utf-8")


def _stable_json(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict) or data.get("object") not in _COMPLETION_OBJECTS:
        return text
    for key in _TIMING_KEYS:
        data.pop(key, None)
    dumped = json.dumps(data, ensure_ascii=False)
    try:
        dumped.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud83d", from a proxy that cut a string between
        # the halves of an emoji) cannot be UTF-8: keep it escaped, as it came.
        dumped = json.dumps(data)
    return dumped


def watch_replays(cassette: Any, on_replay: Callable[[], None], nodeid: str = "") -> None:
    """Call ``on_replay`` whenever vcrpy answers a request from the recording.

    An answer recorded by an earlier version has the placeholder id
    ``chatcmpl-recorded``: it is replayed with an id of its own (see
    :func:`own_id`), and the file is left as it is.
    """
    play = cassette.play_response

    def play_response(request: Any) -> Any:
        response = play(request)
        on_replay()
        body = response["body"].get("string") if isinstance(response.get("body"), dict) else None
        # The hot path: one substring search, and work only for an old recording.
        if isinstance(body, bytes) and b'-recorded"' in body and _LEGACY_ID.search(body):
            position = next((i for i, (_, played) in enumerate(cassette.data) if played is response), 0)
            return {**response, "body": {**response["body"], "string": own_id(body, nodeid, position)}}
        return response

    cassette.play_response = play_response


def own_id(body: bytes, nodeid: str, position: int) -> bytes:
    """``body`` with the placeholder id replaced by one of its own: ``chatcmpl-<test>-<position>``.

    ``<test>`` is 12 hex digits of the SHA-256 of the test's node id and
    ``<position>`` the answer's place in the recording, so every answer of a
    suite gets a distinct id, the same on every run and machine (calls from
    threads included), and every chunk of a stream its answer's one.
    """
    test = hashlib.sha256(nodeid.encode("utf-8")).hexdigest()[:12]
    return _LEGACY_ID.sub(lambda m: b'"id": "' + m.group(1) + f'-{test}-{position}"'.encode(), body)


def _cassette_options(mode: str) -> dict[str, Any]:
    """vcrpy's cassette options for ``mode`` (built once per mode and process)."""
    options = _CASSETTE_OPTIONS.get(mode)
    if options is None:
        from vcr import matchers
        from vcr.record_mode import RecordMode

        options = _CASSETTE_OPTIONS[mode] = {
            "serializer": CassetteSerializer,
            "record_mode": RecordMode(RECORD_MODES[mode]),
            # vcrpy's default match_on ignores the body: a changed seed or prompt
            # would silently replay another request's answer.
            "match_on": tuple(getattr(matchers, name) for name in _MATCH_ON),
            # Given to the cassette as they are, not through vcr.VCR, whose
            # wrappers deep-copy every request before each match (four times per
            # replayed call): ours copy nothing and change only the headers and
            # query of vcrpy's own throwaway request objects.
            "before_record_request": _scrub_request,
            "before_record_response": _record_response,
        }
    return options


_CASSETTE_OPTIONS: dict[str, dict[str, Any]] = {}


def _record_response(response: dict[str, Any]) -> dict[str, Any] | None:
    """What a recording keeps of a response: decoded (gzip, deflate), scrubbed, never a transient error."""
    if any(name.lower() == "content-encoding" for name in response["headers"]):
        from vcr.filters import decode_response

        response = decode_response(response)
    return _scrub_response(response)


class _LeanCassette(Cassette):  # type: ignore[misc]
    """vcrpy's cassette, without copying what is fresh from the file.

    vcrpy deep-copies every response it appends, those it loads from the file
    included, which nothing else holds. A replayed test pays that copy for
    nothing; here loading appends what the file gave, through the same filters.
    """

    _loading = False

    def _load(self) -> None:
        self._loading = True
        try:
            super()._load()
        finally:
            self._loading = False

    def append(self, request: Any, response: Any) -> None:
        if not self._loading:
            super().append(request, response)  # a live answer: vcrpy copies it, as it must
            return
        request = self._before_record_request(request)
        if not request:
            return
        response = self._before_record_response(response)
        if response is None:
            return
        self.data.append((request, response))
        self.dirty = True


class _RunningCassette:
    """Stands for the running test's cassette in vcrpy's patches, which are built once per process.

    vcrpy builds its patches (replacement transport methods bound to one
    cassette) on every ``use_cassette``: more than half of entering a cassette.
    Here they are built once, bound to this stand-in, and each test only sets
    the cassette it stands for and switches the replacement methods in and
    out, which is a few attribute assignments.
    """

    def __init__(self) -> None:
        self.cassette: Any = None
        self._swaps: list[tuple[Any, str, Any]] | None = None
        self._originals: list[tuple[Any, str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["cassette"], name)

    # vcrpy's messages use these; dunder methods skip __getattr__.
    def __len__(self) -> int:
        return len(self.cassette)

    def __contains__(self, request: Any) -> bool:
        return request in self.cassette

    def __str__(self) -> str:
        return str(self.cassette)

    def _replacements(self) -> list[tuple[Any, str, Any]]:
        if self._swaps is None:
            from vcr.patch import CassettePatcherBuilder

            # Only the httpx flavours: the openai SDK speaks httpx (1.x/2.x) or
            # httpx2 (3.x); requests, urllib3, aiohttp... are not ours to record.
            builder = CassettePatcherBuilder(self)
            patchers = [*_patchers(builder, "_httpx"), *_patchers(builder, "_httpx2")]
            self._swaps = [(p.getter(), p.attribute, p.new) for p in patchers]
        return self._swaps

    def enter(self, cassette: Any) -> None:
        self.cassette = cassette
        self._originals = []
        for target, attribute, new in self._replacements():
            self._originals.append((target, attribute, target.__dict__.get(attribute, _MISSING)))
            setattr(target, attribute, new)

    def leave(self) -> None:
        for target, attribute, original in reversed(self._originals):
            if original is _MISSING:
                delattr(target, attribute)
            else:
                setattr(target, attribute, original)
        self._originals = []
        self.cassette = None


_MISSING = object()
_RUNNING = _RunningCassette()


def _patchers(builder: Any, group: str) -> list[Any]:
    build = getattr(builder, group, None)
    return list(build()) if build is not None else []


#: The query parameter that tags a draws test's stored requests with their draw's number.
DRAW_PARAMETER = "seedrepro_draw"


def draw_tag(uri: str) -> int | None:
    """The draw a stored request belongs to (``?seedrepro_draw=k``), None for an untagged one."""
    if DRAW_PARAMETER not in uri:  # the usual case: one substring search
        return None
    for name, value in parse_qsl(urlsplit(uri).query, keep_blank_values=True):
        if name == DRAW_PARAMETER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _tagging(draw: Callable[[], int]) -> Callable[[Any], Any]:
    """``_scrub_request`` that also tags a request with the running draw, unless it carries a tag.

    vcrpy applies the filter before matching as well as before recording, so
    draw k's requests only match draw k's recordings: identical unseeded
    requests of different draws each get their own answer. A loaded request
    keeps the tag it was stored with.
    """

    def before(request: Any) -> Any:
        request = _scrub_request(request)
        if draw_tag(request.uri) is None:
            parts = urlsplit(request.uri)
            query = [*parse_qsl(parts.query, keep_blank_values=True), (DRAW_PARAMETER, str(draw()))]
            request.uri = urlunsplit(parts._replace(query=urlencode(query)))
        return request

    return before


def recorded_draws(cassette: Any) -> int:
    """How many draws a loaded cassette holds: its last draw's number + 1 (an untagged recording: one).

    By the last draw, not by counting tags: a draw whose body failed before it
    made a call holds no interaction, and must not make the recording look short.
    """
    tags = [draw_tag(request.uri) for request, _ in cassette.data]
    return max((tag for tag in tags if tag is not None), default=0) + 1


@contextmanager
def open_cassette(recording: Recording, mode: str, draw: Callable[[], int] | None = None) -> Iterator[Any]:
    """Load the test's cassette and route httpx traffic through it until the block ends.

    ``draw``: for a draws test, the running draw's number, tagged on every request.
    """
    options = _cassette_options(mode)
    if draw is not None:
        options = {**options, "before_record_request": _tagging(draw)}
    cassette = _LeanCassette.load(path=str(recording.path), persister=recording, **options)
    loaded = len(cassette.data)  # all from the file, so far
    _RUNNING.enter(cassette)
    try:
        yield cassette
    finally:
        _RUNNING.leave()
        if mode != "replay":  # replay writes nothing: what it used does not matter
            # In place of vcrpy's save; the Recording keeps it until the test is over.
            recording.keep_used(cassette, loaded, options["serializer"])


def missing_recording_error(exc: BaseException) -> CannotOverwriteExistingCassetteException | None:
    """vcrpy's refusal of a request that replay mode has no recording for, if ``exc`` is one.

    openai 1.x wraps any transport exception in ``APIConnectionError`` (after
    retrying it), so the vcrpy error may be a cause further down the chain.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CannotOverwriteExistingCassetteException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def describe_missing(
    call: Call, path: Path, refusal: CannotOverwriteExistingCassetteException, nodeid: str
) -> str:
    """Why a request has no recording in ``replay`` mode, and what to do, in one line.

    It compares the request with the closest recorded one, so that a changed
    base URL is not mistaken for a request that needs recording (and money).
    """
    record = record_command(nodeid)
    seed = "" if call.seed is None else f"seed={call.seed}, "  # the Responses API takes none
    head = f"POST {call.endpoint} ({seed}model={call.request.get('model')})"
    if not path.exists():
        return f"{head} has no recording: no file {path}. Record it with: {record}"
    if _is_empty(path):
        return (
            f"{head} has no recording: {path} is empty (vcrpy treats an empty cassette as a missing one). "
            f"Record it with: {record}"
        )
    failed = getattr(refusal, "failed_request", None)
    try:
        similar = refusal.cassette.find_requests_with_most_matches(failed) if failed is not None else []
    except Exception:  # an explanation must never hide the error it explains
        similar = []
    if not similar:
        return f"{head} matches nothing recorded in {path}. Record it with: {record}"
    closest = similar[0][0]
    where = _where_differs(failed, closest)
    if where:
        return (
            f"{head} was recorded against {_origin(closest)}, this run sends it to {_origin(failed)} "
            f"({where}; in {path}). Replay with the base URL it was recorded with "
            f"(--seedrepro-base-url={_origin(closest)}{_base_path(closest, call)}), "
            f"or record it again with: {record}"
        )
    changed = _body_differences(failed, closest)
    if changed:
        return (
            f"{head} has no recording in {path}: the closest recorded request differs in {changed}. "
            f"Record it with: {record}"
        )
    return (
        f"{head}: every matching recording in {path} was already replayed (the test makes this call "
        f"more often than when it was recorded). Record it with: {record}"
    )


def _is_empty(path: Path) -> bool:
    try:
        return not path.read_bytes().strip()
    except OSError:
        return False


def _origin(request: Any) -> str:
    return f"{request.scheme}://{request.host}:{request.port}"


def _base_path(request: Any, call: Call) -> str:
    path = str(request.path)
    return path[: -len(call.endpoint)] if call.endpoint and path.endswith(call.endpoint) else ""


def _where_differs(failed: Any, recorded: Any) -> str:
    parts = [
        f"{name} {getattr(recorded, name)!r} recorded, {getattr(failed, name)!r} now"
        for name in ("scheme", "host", "port")
        if getattr(failed, name) != getattr(recorded, name)
    ]
    if parts and failed.path != recorded.path:
        parts.append(f"path {recorded.path!r} recorded, {failed.path!r} now")
    return "; ".join(parts)


def _body_differences(failed: Any, recorded: Any) -> str:
    differences = []
    if failed.path != recorded.path:
        differences.append(f"path ({recorded.path} recorded, {failed.path} now)")
    if failed.query != recorded.query:
        differences.append("query")
    new, old = _json_or_none(failed.body), _json_or_none(recorded.body)
    if isinstance(new, dict) and isinstance(old, dict):
        for key in sorted(new.keys() | old.keys()):
            if new.get(key) != old.get(key):
                differences.append(
                    f"body key {key!r} ({_short(old.get(key))} recorded, {_short(new.get(key))} now)"
                )
    elif new != old or (new is None and failed.body != recorded.body):  # not JSON: an upload's bytes
        differences.append("body")
    return ", ".join(differences)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
