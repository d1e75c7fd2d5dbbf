"""Pinning a request body to the test's seed and parameters (pure functions, no SDK)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pin_body(
    body: Mapping[str, Any],
    *,
    marker_seed: int | None,
    default_seed: int,
    params: Mapping[str, Any],
    no_seed: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Return the pinned body and the keys whose call-given values a marker overrode.

    Marker values (``seed`` marker, ``llm_params``) always win over what the call
    passed. The default seed only fills in a request that has no seed of its own:
    code that chose a seed on purpose keeps it. ``no_seed`` (``seed(None)``, for
    a model that ignores seeds) pins "no seed": none is filled in, and a seed
    the call passed is removed.
    """
    pinned = dict(body)
    overridden: list[str] = []
    for key, value in params.items():
        if key in pinned and pinned[key] != value:
            overridden.append(key)
        pinned[key] = value
    if no_seed:
        if pinned.pop("seed", None) is not None:
            overridden.append("seed")
    elif marker_seed is not None:
        if pinned.get("seed") is not None and pinned["seed"] != marker_seed:
            overridden.append("seed")
        pinned["seed"] = marker_seed
    elif pinned.get("seed") is None:
        pinned["seed"] = default_seed
    return pinned, overridden


#: Request keys the Responses API accepts that ``llm_params`` may pin (it has no ``seed``).
RESPONSES_PARAMS = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "max_output_tokens",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "reasoning",
        "truncation",
        "store",
        "metadata",
        "user",
        "service_tier",
        "top_logprobs",
        "include",
        "max_tool_calls",
        "background",
    }
)
#: Chat vocabulary in ``llm_params`` that the Responses API spells differently.
_RESPONSES_NAMES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}


def pin_responses_body(
    body: Mapping[str, Any], *, params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Pin a Responses API body to the ``llm_params`` keys it accepts; no seed (it takes none).

    ``max_tokens`` is pinned as ``max_output_tokens``; keys the Responses API
    does not know (``seed``, ``frequency_penalty``, ``stop``, ...) are left out
    rather than sent to be refused.
    """
    pinned = dict(body)
    overridden: list[str] = []
    for name, value in params.items():
        key = _RESPONSES_NAMES.get(name, name)
        if key not in RESPONSES_PARAMS:
            continue
        if key in pinned and pinned[key] != value:
            overridden.append(key)
        pinned[key] = value
    return pinned, overridden
