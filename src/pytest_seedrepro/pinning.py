"""Pinning a request body to the test's seed and parameters (pure functions, no SDK)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pin_body(
    body: Mapping[str, Any], *, marker_seed: int | None, default_seed: int, params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Return the pinned body and the keys whose call-given values a marker overrode.

    Marker values (``seed`` marker, ``llm_params``) always win over what the call
    passed. The default seed only fills in a request that has no seed of its own:
    code that chose a seed on purpose keeps it.
    """
    pinned = dict(body)
    overridden: list[str] = []
    for key, value in params.items():
        if key in pinned and pinned[key] != value:
            overridden.append(key)
        pinned[key] = value
    if marker_seed is not None:
        if pinned.get("seed") is not None and pinned["seed"] != marker_seed:
            overridden.append("seed")
        pinned["seed"] = marker_seed
    elif pinned.get("seed") is None:
        pinned["seed"] = default_seed
    return pinned, overridden
