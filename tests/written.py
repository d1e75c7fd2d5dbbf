"""What a suite wrote: its recordings and snapshots, byte for byte (shared by the test modules)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def files_of(root: Path) -> dict[str, bytes]:
    """Every recording and snapshot under ``root``, by path relative to it."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for directory in ("cassettes", "__snapshots__")
        for p in sorted((root / directory).rglob("*"))
        if p.is_file()
    }


#: A completion's ``id`` and ``created`` (and its tool calls' ids): the server makes them up afresh
#: on every answer, and recordings keep them as they came.
_SERVER_MADE = re.compile(r'"(id|created)": ?("[^"]*"|\d+)')


def with_server_ids_masked(files: Mapping[Any, bytes]) -> dict[Any, Any]:
    """``files`` with each recording parsed and the ids the server made up masked, to compare the rest."""

    def masked(text: Any) -> Any:
        if isinstance(text, str):
            return _SERVER_MADE.sub(lambda m: f'"{m.group(1)}": "<fresh>"', text)
        if isinstance(text, dict):
            return {key: masked(value) for key, value in text.items()}
        if isinstance(text, list):
            return [masked(value) for value in text]
        return text

    return {
        path: masked(yaml.safe_load(content)) if "cassettes" in str(path) else content
        for path, content in files.items()
    }
