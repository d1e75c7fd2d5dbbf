"""``--seedrepro-repeat=N``: is this request reproducible at all? The seed experiment, per call.

OpenAI's cookbook on ``seed`` sends one request several times and compares
the answers. With ``--seedrepro-repeat=N`` (``live`` only) every read call of
a ``seeded_llm`` test is sent N times in all; the test sees the first answer.
Per call: how many of the N answers equal the first (the identical share),
how many distinct answers there were, their mean pairwise similarity (a
ratio in [0, 1], ``difflib`` unless ``pytest_seedrepro_similarity`` answers),
and the fingerprints seen. Pure functions; no pytest runs needed to test them.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pytest_seedrepro.calls import Call


@dataclass(frozen=True)
class RepeatFigures:
    """What N sends of one call gave."""

    call: int
    seed: Any
    n: int
    identical: int
    distinct: int
    similarity: float
    fingerprints: tuple[str, ...]

    @property
    def identical_share(self) -> float:
        """The share of the N answers equal to the first (the first included)."""
        return self.identical / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for the report and xdist."""
        return {
            **asdict(self),
            "fingerprints": list(self.fingerprints),
            "identical_share": self.identical_share,
        }


def difflib_similarity(a: str, b: str) -> float:
    """``difflib``'s ratio of two texts: 1.0 for equal, 0.0 for nothing in common."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def figures(call: Call, similarity: Callable[[str, str], float] = difflib_similarity) -> RepeatFigures:
    """The figures of one call and its repeats."""
    answers = [call, *call.repeats]
    outputs = [a.output or "" for a in answers]
    pairs = list(itertools.combinations(outputs, 2))
    mean = sum(similarity(a, b) for a, b in pairs) / len(pairs) if pairs else 1.0
    fingerprints = tuple(dict.fromkeys(a.system_fingerprint for a in answers if a.system_fingerprint))
    return RepeatFigures(
        call=call.index,
        seed=call.seed,
        n=len(answers),
        identical=sum(1 for output in outputs if output == outputs[0]),
        distinct=len(set(outputs)),
        similarity=round(mean, 4),
        fingerprints=fingerprints,
    )


def gate_message(nodeid: str, bound: float, found: list[RepeatFigures]) -> str | None:
    """The one-line failure of ``min_identical(bound)``, or ``None`` when every call meets it."""
    below = [f for f in found if f.identical_share < bound]
    if not below:
        return None
    parts = [
        f"call {f.call} (seed {f.seed}): identical {f.identical}/{f.n} ({f.identical_share:.2f}), "
        f"{f.distinct} distinct, mean similarity {f.similarity:.2f}"
        for f in below
    ]
    return f"seedrepro: {nodeid}: below min_identical({bound:g}): {'; '.join(parts)}"
