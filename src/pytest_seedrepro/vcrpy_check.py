"""The shape of the vcrpy internals the plugin uses, checked once, at first use.

``recording.py`` drives vcrpy below its public ``use_cassette`` API (for speed,
and to write a recording only once the test is accepted), so it relies on
names vcrpy does not promise to keep. They have had the same shape from vcrpy
8.2.1 to 9.x; ``pyproject.toml`` bounds vcrpy below its next, untested major,
and :func:`check` turns a vcrpy whose internals moved into one line naming
them, instead of an ``AttributeError`` deep in a test:

- ``vcr.cassette.Cassette``: ``load(**kwargs)`` (a classmethod building the
  cassette and calling ``_load``), ``__init__`` taking ``path``,
  ``serializer``, ``persister``, ``record_mode``, ``match_on``,
  ``before_record_request`` and ``before_record_response``; ``_load()``,
  overridden to append what the file gave without vcrpy's deep copy, and
  ``append(request, response)`` it calls for each loaded interaction;
  ``play_response(request)`` (wrapped to count replays),
  ``find_requests_with_most_matches(request)`` (why a request has no
  recording); the instance attributes ``data``, ``play_counts``, ``dirty``,
  ``_before_record_request`` and ``_before_record_response``.
- The persister interface: ``load_cassette(cassette_path, serializer)`` and
  ``save_cassette(cassette_path, cassette_dict, serializer)``, called by
  keyword for ``serializer``; ``vcr.persisters.filesystem.CassetteNotFoundError``.
- The serializer interface (``serialize``/``deserialize``) through
  ``vcr.serialize.serialize(cassette_dict, serializer)`` and
  ``vcr.serialize.deserialize(cassette_string, serializer)``, and
  ``vcr.serializers.yamlserializer.deserialize``.
- ``vcr.patch.CassettePatcherBuilder(cassette)`` with its ``_httpx`` and
  ``_httpx2`` groups (built once per process, switched per test).
- ``vcr.matchers`` ``method``, ``scheme``, ``host``, ``port``, ``path``,
  ``query`` and ``body``; ``vcr.record_mode.RecordMode`` values ``none``,
  ``new_episodes`` and ``all``; ``vcr.filters.decode_response``;
  ``vcr.errors.CannotOverwriteExistingCassetteException`` (whose
  ``cassette`` and ``failed_request`` are read with a fallback).

Public replacements: ``vcr.VCR().use_cassette`` with ``before_record_*``
filters covers loading and matching, but deep-copies every request before
each match, rebuilds every patch on each use and saves on exit (before the
verdict); there is no public hook for "save what the test used, later".

:func:`check` runs with ``sdk.load``, when the first ``seeded_llm`` test starts,
so it reaches the user the same way an unsupported openai SDK does.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from pytest_seedrepro.sdk import UnsupportedSDK

#: The vcrpy range the plugin is tested with; the same as ``pyproject.toml``'s (tests/test_release.py).
SUPPORTED_RANGE = "vcrpy >= 8.2.1, < 10"
_CASSETTE_ARGUMENTS = (
    "path",
    "serializer",
    "persister",
    "record_mode",
    "match_on",
    "before_record_request",
    "before_record_response",
)
_CASSETTE_ATTRIBUTES = ("data", "play_counts", "dirty", "_before_record_request", "_before_record_response")
_MATCHERS = ("method", "scheme", "host", "port", "path", "query", "body")
_RECORD_MODES = ("none", "new_episodes", "all")


class UnsupportedVcrpy(UnsupportedSDK):
    """The installed vcrpy does not have the internals the plugin uses (one line, naming them)."""


_checked = False


def check() -> None:
    """Import vcrpy and check the internals the plugin uses; :class:`UnsupportedVcrpy` if they moved."""
    global _checked
    if _checked:
        return
    try:
        version = importlib.metadata.version("vcrpy")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    moved = _moved()
    if moved:
        raise UnsupportedVcrpy(
            f"vcrpy {version} has moved internals the plugin uses ({', '.join(moved)}); "
            f"supported: {SUPPORTED_RANGE}: install a supported one, e.g. pip install 'vcrpy>=8.2.1,<10'"
        )
    _checked = True


def _moved() -> list[str]:
    """The internals that are missing or have another shape, by name; empty when all are there."""
    try:
        from vcr import errors, filters, matchers, patch, record_mode, serialize
        from vcr.cassette import Cassette
        from vcr.persisters import filesystem
        from vcr.serializers import yamlserializer
    except ImportError as exc:
        return [str(exc.name or exc)]
    moved: list[str] = []
    own = Cassette.__dict__
    if not isinstance(own.get("load"), classmethod):
        moved.append("Cassette.load")
    moved += _without(
        "Cassette.__init__", Cassette.__init__ if "__init__" in own else None, _CASSETTE_ARGUMENTS
    )
    moved += _without("Cassette._load", own.get("_load"), ())
    moved += _without("Cassette.append", own.get("append"), ("request", "response"))
    moved += _without("Cassette.play_response", own.get("play_response"), ("request",))
    moved += _without(
        "Cassette.find_requests_with_most_matches", own.get("find_requests_with_most_matches"), ("request",)
    )
    if not moved:  # building one touches no file: _load reads it
        try:
            cassette = Cassette(path="seedrepro-shape-check.yaml")
        except Exception:
            moved.append("Cassette(path=...)")
        else:
            moved += [f"Cassette.{name}" for name in _CASSETTE_ATTRIBUTES if not hasattr(cassette, name)]
    moved += _without(
        "FilesystemPersister.load_cassette",
        getattr(filesystem, "FilesystemPersister", None) and filesystem.FilesystemPersister.load_cassette,
        ("cassette_path", "serializer"),
    )
    if not _is_exception(getattr(filesystem, "CassetteNotFoundError", None)):
        moved.append("vcr.persisters.filesystem.CassetteNotFoundError")
    moved += _without(
        "vcr.serialize.serialize", getattr(serialize, "serialize", None), ("cassette_dict", "serializer")
    )
    moved += _without(
        "vcr.serialize.deserialize",
        getattr(serialize, "deserialize", None),
        ("cassette_string", "serializer"),
    )
    moved += _without(
        "vcr.serializers.yamlserializer.deserialize",
        getattr(yamlserializer, "deserialize", None),
        ("cassette_string",),
    )
    builder = getattr(patch, "CassettePatcherBuilder", None)
    moved += _without("CassettePatcherBuilder", builder, ("cassette",))
    moved += [
        f"CassettePatcherBuilder.{group}"
        for group in ("_httpx", "_httpx2")
        if not callable(getattr(builder, group, None))
    ]
    moved += [f"vcr.matchers.{name}" for name in _MATCHERS if not callable(getattr(matchers, name, None))]
    if not _has_values(getattr(record_mode, "RecordMode", None), _RECORD_MODES):
        moved.append("vcr.record_mode.RecordMode")
    moved += _without("vcr.filters.decode_response", getattr(filters, "decode_response", None), ("response",))
    if not _is_exception(getattr(errors, "CannotOverwriteExistingCassetteException", None)):
        moved.append("vcr.errors.CannotOverwriteExistingCassetteException")
    return moved


def _without(name: str, function: Callable[..., Any] | None, parameters: Iterable[str]) -> list[str]:
    """``[name]`` when ``function`` is missing, not callable, or lacks one of ``parameters``."""
    if isinstance(function, classmethod | staticmethod):
        function = function.__func__
    if function is None or not callable(function):
        return [name]
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: callable is all one can say
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return []
    return [name] if any(p not in signature.parameters for p in parameters) else []


def _has_values(enum: Any, values: Iterable[str]) -> bool:
    try:
        return enum is not None and all(enum(value).value == value for value in values)
    except (ValueError, TypeError, AttributeError):
        return False


def _is_exception(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)
