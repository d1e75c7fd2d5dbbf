"""Snapshots of a test's calls, stored through syrupy as readable YAML.

One file per test, ``__snapshots__/<module>/<test>.llm.yaml``, holding every
call: the request as sent (seed included), the response's ``model``, the
``system_fingerprint`` and the output text as a YAML block, so each line of the
model's output is a line of the file and a pull request shows a line diff.
No ids or timestamps. This module imports syrupy's extension machinery and
PyYAML, so only the fixture imports it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from syrupy.data import SnapshotCollection
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from syrupy.types import PropertyFilter, PropertyMatcher, SerializableData, SerializedData

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
    """YAML that puts multi-line strings in blocks and never folds long lines.

    Always PyYAML's own emitter, never libyaml's: the bytes written must not
    depend on whether a machine has libyaml, or snapshots would flap.
    """


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
    return (
        f"# pytest-seedrepro snapshot of {nodeid}\n"
        f"# Refresh: pytest --seedrepro-mode=rerecord --snapshot-update '{nodeid}'\n{body}"
    )


def parse(text: str, location: str) -> list[dict[str, Any]]:
    """The calls stored in a snapshot's text; ``CorruptSnapshot`` names the file when it cannot."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise CorruptSnapshot(f"{location}: not valid YAML ({str(exc).splitlines()[0]})") from None
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, list) or not all(isinstance(c, dict) and "output" in c for c in calls):
        raise CorruptSnapshot(f"{location}: expected a mapping with a 'calls' list of calls with an 'output'")
    return calls


class LLMCallsExtension(SingleFileSnapshotExtension):
    """syrupy extension for seedrepro's per-test YAML snapshots, written atomically."""

    file_extension = "llm.yaml"
    _write_mode = WriteMode.TEXT

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
    def write_snapshot_collection(
        cls, *, snapshot_collection: SnapshotCollection, name_order: dict[str, int] | None = None
    ) -> None:
        # syrupy opens the target and writes in place; a temp file and a rename
        # leave the previous snapshot whole if the run is interrupted.
        target = Path(snapshot_collection.location)
        data = next(iter(snapshot_collection)).data
        if not isinstance(data, str):
            raise TypeError(f"expected text for {target}, got {type(data).__name__}")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
