"""What the plugin knows about one API call of a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Request paths whose bodies accept ``seed`` and therefore get pinned.
PINNED_PATH_SUFFIXES = ("/chat/completions", "/completions")


def is_pinnable(path: str) -> bool:
    """Whether a request to ``path`` takes a seed (chat and legacy completions)."""
    return path.rstrip("/").endswith(PINNED_PATH_SUFFIXES)


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
    error: str | None = None

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
