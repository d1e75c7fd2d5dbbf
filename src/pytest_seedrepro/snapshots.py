"""Snapshots of a test's calls, stored through syrupy as readable YAML.

One file per test, ``__snapshots__/<module>/<test>.llm.yaml``, holding every
call: the request as sent (seed included), the response's ``model``, the
``system_fingerprint`` and the output text as a YAML block, so each line of the
model's output is a line of the file and a pull request shows a line diff.
No ids or timestamps. This module imports syrupy's extension machinery and
PyYAML, so only the fixture imports it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from syrupy.data import SnapshotCollection
from syrupy.extensions.base import AbstractSyrupyExtension
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData

from pytest_seedrepro.calls import Call, is_responses
from pytest_seedrepro.files import (
    NotWritten,
    not_written,
    own_stem,
    read_text,
    write_atomically,
    yaml_problem,
)
from pytest_seedrepro.ids import ID_PREFIX, numbered_request
from pytest_seedrepro.options import refresh_command
from pytest_seedrepro.session import RUN_STATE, RunState

#: Request keys that change how an answer is delivered, not what it says.
TRANSPORT_KEYS = frozenset({"stream", "stream_options"})


@dataclass(frozen=True)
class StoredText:
    """A snapshot's text as it is on disk, asserted back unchanged.

    Asserting it tells syrupy the snapshot is in use without rewriting it: a
    snapshot of a test that failed, was skipped for a fingerprint change or
    passed on an equivalent output must neither be reported unused (and
    deleted by ``--snapshot-update``) nor rewritten.
    """

    text: str


class CorruptSnapshot(Exception):
    """A snapshot file exists but is not a seedrepro snapshot."""


class _Dumper(yaml.SafeDumper):
    """YAML that puts every multi-line string in a literal block and never folds long lines.

    Always PyYAML's own emitter, never libyaml's: the bytes written must not
    depend on whether a machine has libyaml, or snapshots would flap.
    """

    def choose_scalar_style(self) -> str:
        # PyYAML's analysis refuses a block for text with trailing spaces (Markdown
        # line breaks) or tabs and falls back to one double-quoted line, which a
        # pull request shows as one huge changed line. A literal block keeps both
        # exactly; only characters YAML cannot hold in a block are quoted.
        event = self.event
        if isinstance(event, yaml.ScalarEvent) and event.style == "|" and _block_safe(event.value):
            return "|"
        return str(super().choose_scalar_style())

    def determine_block_hints(self, text: str) -> str:
        hints = str(super().determine_block_hints(text))
        if text.startswith("\t") and not hints[:1].isdigit():
            # A reader guesses a block's indentation from its first line, and a
            # tab there is an error: state the indentation instead.
            hints = f"{self.best_indent}{hints}"
        return hints


def _block_safe(text: str) -> bool:
    """Whether a literal block scalar holds ``text`` exactly (printable text, tabs and newlines)."""
    return _NOT_IN_BLOCKS.search(text) is None


#: What a literal block cannot carry as it is: control characters (``\r``
#: included), DEL and C1 controls, lone surrogates, the BOM, and the Unicode
#: line and paragraph separators (a block would read them as line breaks).
_NOT_IN_BLOCKS = re.compile("[^\n\t\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\U0010ffff]")


def storable(value: Any) -> Any:
    """``value`` with lone surrogates spelled as ``\\udXXX`` text, the same way on both sides of a comparison.

    A lone surrogate (a proxy that cut a string between the halves of an
    emoji) cannot be written as UTF-8, so outputs are compared and stored
    with it spelled out.
    """
    if isinstance(value, str):
        return (
            _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value) if _SURROGATE.search(value) else value
        )
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def snapshot_entry(item: pytest.Item, call: Call) -> dict[str, Any]:
    """What the snapshot keeps of one call: no ids, no timestamps, no transport keys."""
    entry: dict[str, Any] = {"endpoint": call.endpoint, "system_fingerprint": call.system_fingerprint}
    if call.draw is not None:
        entry = {"draw": call.draw, **entry}  # only in a draws test: other snapshots keep their shape
    identity = item.ihook.pytest_seedrepro_fingerprint(call=call)
    if identity is None and call.system_fingerprint is None and is_responses(call.endpoint):
        identity = call.model  # the Responses API has no fingerprint: its model is the backend we can see
    if identity is not None and identity != call.system_fingerprint:
        entry["backend"] = str(identity)
    entry["response_model"] = call.model
    if call.status is not None:
        entry["status"] = call.status  # a recorded client error (400, 404, 422): its message is the output
    entry["request"] = {k: v for k, v in sorted(call.request.items()) if k not in TRANSPORT_KEYS}
    entry["output"] = _normalize(item, call.output or "", call)
    if len(call.outputs) > 1:
        # n > 1: every choice, in order (only then, so an n = 1 snapshot keeps its shape).
        entry["choices"] = [_normalize(item, text, call) for text in call.outputs]
    return dict(storable(entry))


def _normalize(item: pytest.Item, output: str, call: Call) -> str:
    """Run the ``pytest_seedrepro_normalize`` chain of ``item``'s scope, each step through pluggy.

    Each implementation must see the previous one's result, which a single
    pluggy call cannot give (every implementation gets the same arguments).
    So pluggy is called once per implementation, in its own order, with a
    caller that holds that implementation and the wrappers: ``tryfirst``,
    ``trylast``, ``wrapper=True`` and ``conftest.py`` scoping all apply.
    """
    scoped = item.ihook.pytest_seedrepro_normalize
    impls = scoped.get_hookimpls()
    if not impls:
        return output
    manager = item.config.pluginmanager
    everywhere = {impl.plugin for impl in item.config.hook.pytest_seedrepro_normalize.get_hookimpls()}
    out_of_scope = everywhere - {impl.plugin for impl in impls}
    steps = [impl for impl in impls if not (impl.wrapper or impl.hookwrapper)]
    # pluggy calls the last of its list first (tryfirst ones are at the end).
    for step in reversed(steps) if steps else [None]:
        others = {impl.plugin for impl in steps if impl is not step}
        caller = manager.subset_hook_caller("pytest_seedrepro_normalize", [*out_of_scope, *others])
        result = caller(output=output, call=call)
        if result is not None:
            output = str(result)
    return output


#: The start of an output's tool-call line (``answers.tool_call_line``), whose id it numbers.
_TOOL_CALL_LINE = "tool_call "


def number_ids(
    entries: list[dict[str, Any]], tool_call_ids: list[str], other_ids: list[str]
) -> list[dict[str, Any]]:
    """Number the ids the server assigned, in the fields that carry them; nothing else changes.

    Servers hand out random ids that come back in later requests (a tool
    call's id, ``previous_response_id``, output items passed back as input):
    kept as they are, every re-recording would change the snapshot and the
    next call's request. Tool-call ids (``tool_call_ids``) become ``call_1``,
    ``call_2``, ... and the others (``other_ids``) their prefix and a number
    (``resp_1``, ``msg_1``, ``fc_1``, ...), in order of appearance, so a
    test's snapshot is the same whoever answered. Only ids are replaced: an id
    ``"1"`` leaves the ``1`` of ``order 1042`` alone, and an empty id is none.

    The fields: chat ``messages[].tool_calls[].id`` and ``messages[].tool_call_id``;
    Responses API ``previous_response_id`` and ``input[]`` items' ``id``,
    ``call_id`` and ``item_id``; and the id of each ``tool_call <id>: ...``
    line of the output (and of each choice's).
    """
    numbers: dict[str, str] = {}
    for raw in tool_call_ids:
        if raw and raw not in numbers:
            numbers[raw] = f"call_{len(numbers) + 1}"
    counts: dict[str, int] = {}
    for raw in other_ids:
        if raw and raw not in numbers:
            match = ID_PREFIX.match(raw)
            prefix = match.group() if match else "id_"
            counts[prefix] = counts.get(prefix, 0) + 1
            numbers[raw] = f"{prefix}{counts[prefix]}"
    if not numbers:
        return entries
    return [_numbered_entry(entry, numbers) for entry in entries]


def _numbered_entry(entry: dict[str, Any], numbers: dict[str, str]) -> dict[str, Any]:
    numbered = dict(entry)
    if isinstance(entry.get("request"), dict):
        numbered["request"] = numbered_request(entry["request"], numbers)
    if isinstance(entry.get("output"), str):
        numbered["output"] = _numbered_text(entry["output"], numbers)
    if isinstance(entry.get("choices"), list):
        numbered["choices"] = [
            _numbered_text(text, numbers) if isinstance(text, str) else text for text in entry["choices"]
        ]
    return numbered


def _numbered_text(text: str, numbers: dict[str, str]) -> str:
    """``text`` with the id of each tool-call line numbered (``tool_call <id>: name(arguments)``)."""
    if _TOOL_CALL_LINE not in text:
        return text
    lines = text.split("\n")
    for position, line in enumerate(lines):
        if not line.startswith(_TOOL_CALL_LINE):
            continue
        rest = line[len(_TOOL_CALL_LINE) :]
        raw, separator, _ = rest.partition(": ")
        if not (separator and raw in numbers):  # an id with ": " in it: the longest known one that fits
            raw = max((r for r in numbers if rest.startswith(f"{r}: ")), key=len, default="")
        if raw:
            lines[position] = f"{_TOOL_CALL_LINE}{numbers[raw]}{rest[len(raw) :]}"
    return "\n".join(lines)


#: Reading only needs the same values back, so libyaml's faster loader is fine.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def render(nodeid: str, calls: list[dict[str, Any]]) -> str:
    """The snapshot text for a test's calls."""
    body = yaml.dump(
        {"calls": calls}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000, indent=2
    )
    return f"# pytest-seedrepro snapshot of {nodeid}\n# Refresh: {refresh_command(nodeid)}\n{body}"


#: The snapshot keys of a call, and the types each may hold.
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "draw": (int,),
    "endpoint": (str,),
    "system_fingerprint": (str, type(None)),
    "backend": (str, type(None)),
    "response_model": (str, type(None)),
    "status": (int,),
    "request": (dict,),
    "output": (str, type(None)),
    "choices": (list,),
}


def parse(text: str, location: str) -> list[dict[str, Any]]:
    """The calls stored in a snapshot's text; ``CorruptSnapshot`` names the file and the fault."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise CorruptSnapshot(f"{location}: not valid YAML ({yaml_problem(exc)})") from None
    if data is None:
        raise CorruptSnapshot(f"{location}: the file is empty")
    calls = data.get("calls") if isinstance(data, dict) else None
    if isinstance(data, dict) and "calls" in data and not isinstance(calls, list):
        raise CorruptSnapshot(
            f"{location}: 'calls' should be a list, got {type(calls).__name__} {_shorten(calls)}"
        )
    if not isinstance(calls, list):
        raise CorruptSnapshot(
            f"{location}: expected a mapping with a 'calls' list (not a seedrepro snapshot)"
        )
    for index, call in enumerate(calls):
        if not isinstance(call, dict) or "output" not in call:
            raise CorruptSnapshot(f"{location}: call {index} is not a mapping with an 'output'")
        for key, types in _ENTRY_TYPES.items():
            if key in call and not isinstance(call[key], types):
                wanted = " or ".join(
                    "null" if t is type(None) else _TYPE_NAMES.get(t, t.__name__) for t in types
                )
                raise CorruptSnapshot(
                    f"{location}: call {index}: {key!r} should be {wanted}, got {type(call[key]).__name__} "
                    f"{_shorten(call[key])}"
                )
    return calls


_TYPE_NAMES = {str: "text", dict: "a mapping", int: "an integer", list: "a list"}


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def assertion_for(item: Any, request: Any = None) -> Any:
    """A syrupy ``SnapshotAssertion`` for ``item``, with seedrepro's extension.

    Built the way syrupy's ``snapshot`` fixture builds its own, without setting
    up that fixture and deriving a second assertion from it (two assertions,
    each registered with syrupy's session, for one snapshot: ~0.2 ms a test).
    syrupy keeps its session in ``config._syrupy``; should a syrupy release
    move it, the fixture is asked for through ``request`` instead.
    """
    from syrupy.assertion import SnapshotAssertion
    from syrupy.location import PyTestLocation

    config = item.config
    session = getattr(config, "_syrupy", None)
    if session is not None:
        try:
            return SnapshotAssertion(
                update_snapshots=config.option.update_snapshots,
                update_new_snapshots_only=config.option.update_new_snapshots_only,
                extension_class=LLMCallsExtension,
                test_location=PyTestLocation(item),
                session=session,
            )
        except (AttributeError, TypeError):
            pass
    if request is None:
        raise LookupError("syrupy's session is out of reach")
    return request.getfixturevalue("snapshot").use_extension(LLMCallsExtension)


def read_stored(assertion: Any) -> tuple[str, str | None]:
    """The snapshot file of ``assertion`` and its text (None: no file yet), read once per test.

    syrupy reads the file again when the test's snapshot is asserted at its
    end; the text read here is handed to that read instead (the extension's
    ``read_snapshot_data_from_location``), so a test reads its snapshot once.
    Raises ``files.UnreadableFile`` with one line.
    """
    extension = assertion.extension
    location = str(extension.get_location(test_location=assertion.test_location, index=assertion.index))
    text = read_text(Path(location), what="the snapshot")
    # Handed to the assertion's own extension, the one syrupy reads through: it belongs to this test.
    if isinstance(extension, LLMCallsExtension):
        extension.just_read = (location, text)
    return location, text


def _run_of(test_location: Any) -> RunState | None:
    """The run of the test at syrupy's ``test_location`` (its item's ``config.stash``), if the plugin is on.

    syrupy calls the extension's class methods with the test's location and no
    instance of its own: the location's item is the way back to the run's state.
    """
    config = getattr(getattr(test_location, "item", None), "config", None)
    return None if config is None else config.stash.get(RUN_STATE, None)


def _directory(kind: str, cls: Any, test_location: Any, compute: Any) -> str:
    run = _run_of(test_location)
    if run is None:
        return str(compute(test_location=test_location))
    key = (kind, test_location.filepath, str(cls.snapshot_dirname))
    found = run.snapshot_directories.get(key)
    if found is None:
        found = run.snapshot_directories[key] = str(compute(test_location=test_location))
    return found


class LLMCallsExtension(SingleFileSnapshotExtension):
    """syrupy extension for seedrepro's per-test YAML snapshots, written atomically."""

    file_extension = "llm.yaml"
    _write_mode = WriteMode.TEXT

    #: The snapshot :func:`read_stored` read for this assertion, until syrupy asks for it (once).
    just_read: tuple[str, str | None] | None = None

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        # Three calls a test, each a dozen path operations, for a value that
        # depends only on the test file and --snapshot-dirname.
        return _directory("dirname", cls, test_location, super().dirname)

    @classmethod
    def discovery_dirname(cls, *, test_location: Any) -> str:
        # Asked for every snapshot file when syrupy looks for unused ones at the end.
        return _directory("discovery", cls, test_location, super().discovery_dirname)

    @classmethod
    def get_snapshot_name(cls, *, test_location: Any, index: Any = 0) -> str:
        # syrupy drops characters a file name cannot hold (``test[a/b]`` ->
        # ``test[ab]``) and cuts long names: either can fold two tests into one
        # file. Such a name gets a suffix from the node id; others stay as they were.
        original = AbstractSyrupyExtension.get_snapshot_name(test_location=test_location, index=index)
        cleaned = str(super().get_snapshot_name(test_location=test_location, index=index))
        nodeid = str(test_location.nodeid) + (f"[{index}]" if index else "")
        return own_stem(cleaned, original, nodeid, f".{cls.file_extension}")

    @classmethod
    def matches_test_location(cls, *, test_location: Any, snapshot_location: str) -> bool:
        # syrupy relates a file to its test by the test's name, which a suffixed
        # name no longer starts with; it refuses to write a snapshot it cannot relate.
        if test_location.matches_snapshot_location(snapshot_location):  # syrupy's own rule (all 7.x)
            return True
        own = Path(cls.get_location(test_location=test_location, index=0))
        return Path(snapshot_location).name == own.name and Path(snapshot_location).resolve() == own.resolve()

    @classmethod
    def get_location(cls, *, test_location: Any, index: Any) -> str:
        run = _run_of(test_location)
        last = None if run is None else run.last_snapshot_location
        # By identity: the cache holds the location object, so it cannot be another one's id.
        if last is not None and last[0] is test_location and last[1] == index:
            return last[2]
        location = str(super().get_location(test_location=test_location, index=index))
        if run is not None:
            run.last_snapshot_location = (test_location, index, location)
        return location

    def read_snapshot_data_from_location(
        self, *, snapshot_location: str, snapshot_name: str, session_id: str
    ) -> SerializableData | None:
        just_read, self.just_read = self.just_read, None
        if just_read is not None and just_read[0] == snapshot_location:
            return just_read[1]
        return super().read_snapshot_data_from_location(
            snapshot_location=snapshot_location, snapshot_name=snapshot_name, session_id=session_id
        )

    def serialize(
        self,
        data: SerializableData,
        *,
        exclude: PropertyFilter | None = None,
        include: PropertyFilter | None = None,
        matcher: PropertyMatcher | None = None,
    ) -> SerializedData:
        if isinstance(data, StoredText):
            return data.text
        if isinstance(data, str):
            return data
        raise TypeError(f"{type(self).__name__} stores rendered text, got {type(data).__name__}")

    @classmethod
    def write_snapshot(
        cls,
        *,
        snapshot_location: str,
        snapshots: list[tuple[SerializedData, Any, Any]],
        name_order: dict[str, int] | None = None,
    ) -> None:
        """syrupy's ``write_snapshot``, with an unwritable directory reported like any unwritten file.

        syrupy marks this method final, but it makes the snapshot's directory
        itself before calling :meth:`write_snapshot_collection`, and turns the
        OS error of that (a file where the directory should be) into a failed
        assertion that no test reports: the run passed with its snapshot unwritten.
        """
        ours = all(
            cls.matches_test_location(test_location=test_location, snapshot_location=snapshot_location)
            for _, test_location, _ in snapshots
        )
        try:
            with warnings.catch_warnings():
                if ours:
                    # syrupy < 7.0.3 relates a file to its test by the test's name only
                    # and warns about a name that ends in the suffix of a folded id
                    # (files.own_stem); this extension made that name for that test.
                    warnings.filterwarnings("ignore", message=r"\s*Can not relate snapshot")
                super().write_snapshot(
                    snapshot_location=snapshot_location, snapshots=snapshots, name_order=name_order
                )
        except OSError as exc:
            problem = not_written(exc, Path(snapshot_location), what="the snapshot")
        except NotWritten as exc:  # from write_snapshot_collection, which has no test location
            problem = exc
        else:
            return
        # syrupy writes at the end of the session, where a raise is an INTERNALERROR:
        # the line is kept for the summary and the exit status.
        run = _run_of(snapshots[0][1]) if snapshots else None
        if run is None:
            raise problem
        run.unwritten.append(str(problem))

    @classmethod
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        # syrupy opens the target and writes in place; a temp file and a rename
        # leave the previous snapshot whole if the run is interrupted.
        target = Path(snapshot_collection.location)
        data = next(iter(snapshot_collection)).data
        if not isinstance(data, str):
            raise TypeError(f"expected text for {target}, got {type(data).__name__}")
        # A NotWritten goes to write_snapshot, which knows the test and so the run to report it in.
        write_atomically(target, data, what="the snapshot")
