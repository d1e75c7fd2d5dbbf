"""Recordings: one vcrpy cassette per test, matched on the body, safe to commit.

This module imports vcrpy, so only the fixture imports it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import vcr
from vcr.errors import CannotOverwriteExistingCassetteException
from vcr.persisters.filesystem import CassetteNotFoundError, FilesystemPersister

from pytest_seedrepro.calls import Call

#: seedrepro mode -> vcrpy record mode. ``live`` uses no cassette at all.
RECORD_MODES = {"replay": "none", "record": "new_episodes", "rerecord": "all"}

#: The request and response headers a recording keeps. A whitelist, not a
#: blocklist: Authorization, api-key, OpenAI-Organization/-Project, cookies,
#: x-stainless-* and user-agent (which changes with every SDK upgrade) can
#: never reach the file, nor any header a provider adds tomorrow.
KEPT_REQUEST_HEADERS = frozenset({"content-type", "accept"})
KEPT_RESPONSE_HEADERS = frozenset({"content-type"})
#: Query parameters that carry keys (Azure's ``api-key``, Google-style ``key``).
SECRET_QUERY_PARAMETERS = ("api-key", "api_key", "key", "access_token", "token")
#: Per-request wall-clock measurements some servers add (llama.cpp's
#: llama-server: ``timings``); no SDK reads them and they change every run.
_TIMING_KEYS = ("timings",)
#: Objects whose top-level ``id`` no later request refers to, so it can be made
#: stable; a Responses API id can come back as ``previous_response_id``.
_STABLE_ID_OBJECTS = {
    "chat.completion": "chatcmpl-recorded",
    "chat.completion.chunk": "chatcmpl-recorded",
    "text_completion": "cmpl-recorded",
}


class MissingRecording(Exception):
    """A request in ``replay`` mode that no recording answers."""


class RecordingNotWritten(Exception):
    """A recording could not be written (permissions, a full disk, a file where a directory should be)."""


class CorruptRecording(Exception):
    """A cassette file exists but cannot be read."""


def cassette_path(test_path: Path, nodeid: str, cassette_dir: str) -> Path:
    """``<test dir>/<cassette dir>/<module>/<Class.test_name[params]>.yaml``."""
    parts = nodeid.split("::")[1:]
    name = re.sub(r"[^\w.\[\]=,+-]+", "_", ".".join(parts))
    return test_path.parent / cassette_dir / test_path.stem / f"{name}.yaml"


class AtomicPersister:
    """vcrpy persister that writes through a temp file and a rename, or not at all.

    An interrupted run leaves the previous recording whole. ``allow_save`` is
    turned off when a call failed or the test was skipped, so the previous
    recording stays untouched; entries are put in issue order before saving so
    that calls answered out of order (``asyncio.gather``) never reorder the file.
    """

    def __init__(self, calls: list[Call], *, ignore_existing: bool) -> None:
        self.calls = calls
        self.ignore_existing = ignore_existing
        self.allow_save = True
        self.saved = False

    def load_cassette(self, cassette_path: str | Path, serializer: Any) -> Any:
        if self.ignore_existing:
            raise CassetteNotFoundError()
        try:
            return FilesystemPersister.load_cassette(cassette_path, serializer)
        except CassetteNotFoundError:
            raise
        except Exception as exc:  # yaml errors, a cassette of an old format, a broken structure
            raise CorruptRecording(f"{cassette_path}: {type(exc).__name__}: {exc}".strip()) from None

    def save_cassette(
        self, cassette_path: str | Path, cassette_dict: dict[str, Any], serializer: Any
    ) -> None:
        if not self.allow_save:
            return
        from vcr.serialize import serialize

        data = serialize(_in_issue_order(cassette_dict, self.calls), serializer)
        target = Path(cassette_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise RecordingNotWritten(f"cannot write the recording {target}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise RecordingNotWritten(
                    f"cannot write the recording {target}: {exc.strerror or exc}"
                ) from None
            raise
        self.saved = True


def _in_issue_order(cassette_dict: dict[str, Any], calls: list[Call]) -> dict[str, Any]:
    pairs = list(zip(cassette_dict["requests"], cassette_dict["responses"], strict=True))
    bodies = [(call.endpoint, call.request) for call in calls]

    def issue_index(pair: tuple[Any, Any]) -> int:
        request = pair[0]
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            return len(bodies)
        for index, (endpoint, sent) in enumerate(bodies):
            if body == sent and request.path.endswith(endpoint):
                return index
        return len(bodies)

    pairs.sort(key=issue_index)  # stable: identical requests keep their recorded order
    return {**cassette_dict, "requests": [p[0] for p in pairs], "responses": [p[1] for p in pairs]}


def _keep_request_headers(request: Any) -> Any:
    for name in list(request.headers):
        if name.lower() not in KEPT_REQUEST_HEADERS:
            del request.headers[name]
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any] | None:
    # Never keep an error: a recorded 429/5xx would make every replay sleep
    # through the SDK's retry backoff, and the test would replay a failure.
    if response["status"]["code"] >= 400:
        return None
    response["headers"] = {
        name: value for name, value in response["headers"].items() if name.lower() in KEPT_RESPONSE_HEADERS
    }
    body = response["body"].get("string")
    if isinstance(body, bytes | str):
        response["body"]["string"] = _stable_body(body if isinstance(body, bytes) else body.encode())
    return response


def _stable_body(body: bytes) -> bytes:
    """Fix the volatile ``id``/``created`` of completion objects: re-recorded diffs show real changes."""
    text = body.decode("utf-8", errors="surrogateescape")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _stable_json(stripped).encode("utf-8", errors="surrogateescape")
    if "data:" not in text:
        return body
    lines = []
    for line in text.split("\n"):
        if line.startswith("data: {"):
            line = "data: " + _stable_json(line[6:])
        lines.append(line)
    return "\n".join(lines).encode("utf-8", errors="surrogateescape")


def _stable_json(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict) or data.get("object") not in _STABLE_ID_OBJECTS:
        return text
    data["id"] = _STABLE_ID_OBJECTS[data["object"]]
    data["created"] = 0
    for key in _TIMING_KEYS:
        data.pop(key, None)
    return json.dumps(data, ensure_ascii=False)


def open_cassette(path: Path, mode: str, persister: AtomicPersister) -> Any:
    """A vcrpy ``use_cassette`` context for one test."""
    recorder = vcr.VCR(
        record_mode=RECORD_MODES[mode],
        # vcrpy's default match_on ignores the body: a changed seed or prompt
        # would silently replay another request's answer.
        match_on=("method", "scheme", "host", "port", "path", "query", "body"),
        filter_query_parameters=SECRET_QUERY_PARAMETERS,
        before_record_request=_keep_request_headers,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_persister(persister)
    return recorder.use_cassette(str(path))


def is_missing_recording(exc: BaseException) -> bool:
    """Whether vcrpy refused a request because replay mode has no recording for it.

    openai 1.x wraps any transport exception in ``APIConnectionError`` (after
    retrying it), so the vcrpy error may be a cause further down the chain.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CannotOverwriteExistingCassetteException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def describe_missing(call: Call, nodeid: str, path: Path) -> str:
    """The one-line message for a request that has no recording in ``replay`` mode."""
    where = f"no recording file {path} for" if not path.exists() else f"no recording in {path} matches"
    return (
        f"seedrepro: {nodeid}: {where} POST {call.endpoint} (seed={call.seed}, "
        f"model={call.request.get('model')}). Record it with: pytest --seedrepro-mode=record '{nodeid}'"
    )
