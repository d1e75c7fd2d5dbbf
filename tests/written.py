"""What a suite wrote: its recordings and snapshots, byte for byte (shared by the test modules)."""

from __future__ import annotations

from pathlib import Path


def files_of(root: Path) -> dict[str, bytes]:
    """Every recording and snapshot under ``root``, by path relative to it."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for directory in ("cassettes", "__snapshots__")
        for p in sorted((root / directory).rglob("*"))
        if p.is_file()
    }
