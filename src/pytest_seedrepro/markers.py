"""The ``seed``, ``llm_params``, ``on_fingerprint_change``, ``llm_tolerance`` and ``draws`` markers.

Validation and resolution. Markers work on functions, classes and modules.
``item.iter_markers`` yields the nearest first, so the nearest ``seed``,
``on_fingerprint_change`` and ``llm_tolerance`` win, and ``llm_params`` are
merged from the farthest to the nearest, key by key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from pytest_seedrepro.options import POLICIES

MARKER_LINES = (
    "seed(n, ...): pin the seed of this test's LLM requests to the integer n; several seeds run the "
    "test once per seed, ids [seed=n]; seed(None) sends no seed, for a model that ignores it "
    "(pytest-seedrepro)",
    "llm_params(**params): pin request parameters of this test's LLM requests, e.g. "
    "llm_params(model='gpt-4o-mini', temperature=0) (pytest-seedrepro)",
    "on_fingerprint_change(policy): 'skip', 'warn' or 'fail' when system_fingerprint changed "
    "and the output with it (pytest-seedrepro)",
    "llm_tolerance(similarity): outputs at least this similar (above 0, at most 1) count as equal; "
    "JSON is compared parsed, tool calls stay exact (pytest-seedrepro)",
    "min_identical(share): with --seedrepro-repeat, fail when fewer than this share (0 to 1) of each "
    "call's answers equal its first (pytest-seedrepro)",
    "draws(n, min_pass=1.0): run the test's body n times (draws) as one test; it passes when at least "
    "ceil(min_pass * n) draws passed (pytest-seedrepro)",
)


class MarkerError(Exception):
    """A marker was given arguments the plugin cannot use."""


@dataclass(frozen=True)
class Pins:
    """What the markers of one test pin."""

    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None
    #: ``min_identical``: the share of repeated answers that must equal the first.
    min_identical: float | None = None
    #: ``seed(None)``: the requests carry no seed (none filled in, the call's own removed).
    no_seed: bool = False
    #: ``llm_tolerance``: the similarity at which two outputs count as equal.
    tolerance: float | None = None
    #: ``draws``: how many times the body runs (None: once, no draws).
    draws: int | None = None
    #: ``draws``: the share of draws that must pass, exactly as written (``0.28`` is 7/25).
    min_pass: Fraction = Fraction(1)
    #: ``draws``: ``min_pass`` as the marker spelled it, for messages.
    min_pass_text: str = "1.0"


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def seeds_of(mark: pytest.Mark) -> tuple[int | None, ...]:
    """The seeds of a ``seed`` marker: one (``seed(7)``), a matrix (``seed(1, 2)``), none (``seed(None)``)."""
    args = list(mark.args)
    if "seed" in mark.kwargs:
        args.append(mark.kwargs["seed"])
    extra = set(mark.kwargs) - {"seed"}
    if extra or not args:
        raise MarkerError(
            f"@pytest.mark.seed takes one or more integers, got args={mark.args!r} kwargs={mark.kwargs!r}"
        )
    if None in args:
        if len(args) == 1:
            return (None,)
        raise MarkerError(
            f"@pytest.mark.seed(None) pins no seed: it cannot be part of a seed matrix, got {tuple(args)!r}"
        )
    for value in args:
        # bool is an int subclass, but seed(True) is certainly a mistake.
        if not isinstance(value, int) or isinstance(value, bool):
            raise MarkerError(f"@pytest.mark.seed takes an integer, got {_describe(value)}")
    if len(set(args)) != len(args):
        raise MarkerError(f"@pytest.mark.seed got the same seed twice: {tuple(args)!r}")
    return tuple(args)


def matrix_seeds(node: Any) -> tuple[int, ...] | None:
    """The seeds of a seed matrix (``seed(1, 2, 3)``, the nearest marker) for ``node``, else ``None``.

    Used at collection, where a bad marker is left for the test's own error.
    """
    mark = node.get_closest_marker("seed")
    if mark is None or len(mark.args) < 2:
        return None
    try:
        seeds = seeds_of(mark)
    except MarkerError:
        return None
    return tuple(seed for seed in seeds if seed is not None)  # a matrix has no None (seeds_of refuses it)


def _params(mark: pytest.Mark) -> dict[str, Any]:
    if mark.args:
        raise MarkerError(
            "@pytest.mark.llm_params takes keyword arguments only (e.g. temperature=0), "
            f"got positional {mark.args!r}"
        )
    if "seed" in mark.kwargs:
        raise MarkerError("@pytest.mark.llm_params cannot pin 'seed': use @pytest.mark.seed(n)")
    for key, value in mark.kwargs.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise MarkerError(
                f"@pytest.mark.llm_params({key}=...) must be a JSON value (str, number, bool, None, "
                f"list, dict), got {_describe(value)}"
            ) from None
    return dict(mark.kwargs)


def _policy(mark: pytest.Mark) -> str:
    args = list(mark.args)
    if "policy" in mark.kwargs:
        args.append(mark.kwargs["policy"])
    if set(mark.kwargs) - {"policy"} or len(args) != 1 or args[0] not in POLICIES:
        shown = _describe(args[0]) if len(args) == 1 else f"args={mark.args!r} kwargs={mark.kwargs!r}"
        raise MarkerError(
            f"@pytest.mark.on_fingerprint_change takes one of {', '.join(POLICIES)}, got {shown}"
        )
    return str(args[0])


def _min_identical(mark: pytest.Mark) -> float:
    args = list(mark.args)
    if "share" in mark.kwargs:
        args.append(mark.kwargs["share"])
    value = args[0] if len(args) == 1 and not set(mark.kwargs) - {"share"} else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        shown = _describe(value) if len(args) == 1 else f"args={mark.args!r} kwargs={mark.kwargs!r}"
        raise MarkerError(f"@pytest.mark.min_identical takes one share from 0 to 1 (e.g. 0.8), got {shown}")
    return float(value)


def _tolerance(mark: pytest.Mark) -> float:
    args = list(mark.args)
    if "similarity" in mark.kwargs:
        args.append(mark.kwargs["similarity"])
    value = args[0] if len(args) == 1 and not set(mark.kwargs) - {"similarity"} else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        shown = _describe(value) if len(args) == 1 else f"args={mark.args!r} kwargs={mark.kwargs!r}"
        raise MarkerError(
            f"@pytest.mark.llm_tolerance takes one similarity above 0 and at most 1 (e.g. 0.9), got {shown}"
        )
    return float(value)


def draws_of(mark: pytest.Mark) -> tuple[int, Fraction, str]:
    """``draws(n, min_pass=1.0)``: the number of draws, the exact pass share and its spelling."""
    args = list(mark.args)
    for name in ("n", "min_pass"):
        if name in mark.kwargs:
            args.append(mark.kwargs[name])
    extra = set(mark.kwargs) - {"n", "min_pass"}
    if extra or not 1 <= len(args) <= 2:
        raise MarkerError(
            f"@pytest.mark.draws takes n and min_pass (e.g. draws(5, min_pass=0.8)), "
            f"got args={mark.args!r} kwargs={mark.kwargs!r}"
        )
    n = args[0]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise MarkerError(f"@pytest.mark.draws takes a whole number of draws n >= 1, got {_describe(n)}")
    share = args[1] if len(args) == 2 else 1.0
    exact = _exact(share)
    if exact is None or not 0 < exact <= 1:
        raise MarkerError(
            f"@pytest.mark.draws takes a min_pass above 0 and at most 1 (e.g. 0.8), got {_describe(share)}"
        )
    return n, exact, str(share)


def _exact(value: object) -> Fraction | None:
    """``value`` as the exact fraction its literal spells (``0.28`` is 7/25, not the float's binary value)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Fraction | Decimal):
        return Fraction(value)
    if isinstance(value, float) and math.isfinite(value):
        return Fraction(repr(value))  # the shortest literal that reads back as this float
    return None


def required_draws(n: int, min_pass: Fraction) -> int:
    """How many of ``n`` draws must pass: ``ceil(min_pass * n)``, computed exactly."""
    return math.ceil(min_pass * n)


def resolve(node: pytest.Item) -> Pins:
    """The pins of ``node``, marks given with ``pytest.param(marks=...)`` included; raises ``MarkerError``."""
    seed_marks = list(node.iter_markers("seed"))
    for mark in seed_marks:  # validate all, not only the winner: a typo on a class is still a typo
        seeds_of(mark)
    params: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers("llm_params"))):
        params.update(_params(mark))
    policy_marks = list(node.iter_markers("on_fingerprint_change"))
    for mark in policy_marks:
        _policy(mark)
    gate = node.get_closest_marker("min_identical")
    tolerance_marks = list(node.iter_markers("llm_tolerance"))
    for mark in tolerance_marks:
        _tolerance(mark)
    seed = seeds_of(seed_marks[0])[0] if seed_marks else None
    draws_mark = node.get_closest_marker("draws")
    draws, min_pass, min_pass_text = (
        draws_of(draws_mark) if draws_mark is not None else (None, Fraction(1), "1.0")
    )
    return Pins(
        draws=draws,
        min_pass=min_pass,
        min_pass_text=min_pass_text,
        min_identical=_min_identical(gate) if gate is not None else None,
        # For a seed matrix, the fixture takes each test's own seed from its parameter.
        seed=seed,
        params=params,
        policy=_policy(policy_marks[0]) if policy_marks else None,
        no_seed=bool(seed_marks) and seed is None,
        tolerance=_tolerance(tolerance_marks[0]) if tolerance_marks else None,
    )
