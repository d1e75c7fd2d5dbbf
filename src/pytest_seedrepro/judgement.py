"""The verdict's rule on plain data: pair this run's calls with the snapshot's, find the first divergence.

A test of several calls (an agent's tool loop, a conversation) is judged by
its **first divergence** from the snapshot, walking the calls in order:

- a changed request (a pinned parameter, the prompt) fails the test;
- a changed output under the same fingerprint (or with either one unknown) fails;
- a changed output under a changed fingerprint (backend identity) means the
  backend changed: the fingerprint policy applies to the whole test, and
  everything after it (changed conversation history, another number of
  rounds, later outputs) is its consequence, listed but not judged;
- a different number of calls, everything before being equal, fails.

A call whose fingerprint changed but whose output did not is no divergence:
it is noted (the summary lists it) and the walk goes on.

A call whose request carries no seed (the Responses API, ``seed(None)``) is
sampled afresh each time: a changed output under the same backend identity
is no regression by itself (the test's own assertions decide). It *varied*:
listed, and like a backend change everything after it is its consequence
(a conversation's history carries the new answer), listed but not judged.

Pure functions over snapshot entries (dicts), so every combination is
unit-tested without pytest runs. No pytest, openai, vcrpy or syrupy here.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_seedrepro.calls import canonical

Entry = dict[str, Any]


@dataclass
class FingerprintChange:
    """One call whose backend identity differs from the snapshot's."""

    index: int
    seed: Any
    old: str | None
    new: str | None
    #: "same output" when only the fingerprint changed, else the policy applied.
    outcome: str
    old_model: str | None = None
    new_model: str | None = None
    diff: str = ""


@dataclass
class Divergence:
    """The first place this run differs from the snapshot."""

    kind: Literal["request", "output", "backend", "varied", "count"]
    #: What differs, in one line (an output change adds its diff below).
    message: str
    #: Position of this run's entry in the pairs (None when only the snapshot has the call).
    position: int | None = None
    #: For ``backend``: the change the policy applies to.
    change: FingerprintChange | None = None
    #: The snapshot's entry and this run's, where both have the call.
    old: Entry | None = None
    new: Entry | None = None


@dataclass
class Judgement:
    """What the walk found."""

    divergence: Divergence | None = None
    #: Calls before the divergence whose fingerprint changed with the same output.
    noted: list[FingerprintChange] = field(default_factory=list)
    #: What differs after a backend divergence: its consequences, listed, not judged.
    consequences: list[str] = field(default_factory=list)
    #: Calls before the divergence whose response ``model`` changed with the same
    #: fingerprint and output (an alias now pointing at a new dated model).
    model_changes: list[FingerprintChange] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        """Whether the divergence fails the test whatever the policy."""
        return self.divergence is not None and self.divergence.kind not in ("backend", "varied")


def identity(entry: Entry) -> str | None:
    """The backend identity an entry was answered by: ``backend`` if a hook gave one, else the fingerprint."""
    value = entry.get("backend", entry.get("system_fingerprint"))
    return None if value is None else str(value)


def pairs(
    stored: list[Entry], current: list[Entry], *, threaded: bool
) -> list[tuple[Entry | None, Entry | None]]:
    """Pair this run's entries with the snapshot's: by position, or by request for calls from threads.

    Calls from several threads arrive in no reproducible order, so each is
    paired with a stored entry of the same endpoint and request (the same
    output first, if one has it); the rest pair by position.
    """
    if not threaded:
        return [
            (stored[i] if i < len(stored) else None, current[i] if i < len(current) else None)
            for i in range(max(len(stored), len(current)))
        ]
    unmatched = list(stored)
    result: list[tuple[Entry | None, Entry | None]] = []
    for new in current:
        key = (new.get("endpoint"), canonical(new.get("request")))
        same = [old for old in unmatched if (old.get("endpoint"), canonical(old.get("request"))) == key]
        exact = [old for old in same if old.get("output") == new.get("output")]
        candidates = exact or same or unmatched
        best = candidates[0] if candidates else None
        if best is not None:
            unmatched.remove(best)
        result.append((best, new))
    result.extend((old, None) for old in unmatched)
    return result


def answers(entry: Entry) -> list[str]:
    """An entry's output texts: every choice's of an ``n > 1`` call, else its one output."""
    choices = entry.get("choices")
    if isinstance(choices, list):
        return [str(text or "") for text in choices]
    return [str(entry.get("output") or "")]


def same_answers(old: Entry, new: Entry, same_text: Callable[[str, str], bool]) -> bool:
    """Whether two entries answered the same: as many choices, each the same by ``same_text``."""
    old_texts, new_texts = answers(old), answers(new)
    return len(old_texts) == len(new_texts) and all(
        same_text(expected, actual) for expected, actual in zip(old_texts, new_texts, strict=True)
    )


def answer_text(entry: Entry) -> str:
    """An entry's output as one text for a diff, each choice under a ``choice K:`` line when n > 1."""
    texts = answers(entry)
    if "choices" not in entry:
        return texts[0]
    return "\n".join(f"choice {index}:\n{text}" for index, text in enumerate(texts))


def diff(old: str, new: str) -> str:
    """A unified diff of two outputs, indented for a test report."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "snapshot", "this run", lineterm="", n=2)
    return "\n".join("    " + line for line in lines)


def changed_keys(old: Entry, new: Entry) -> list[str]:
    """The request keys whose values differ between two entries."""
    old_request, new_request = old.get("request") or {}, new.get("request") or {}
    return sorted(
        k for k in old_request.keys() | new_request.keys() if old_request.get(k) != new_request.get(k)
    )


def label(entry: Entry) -> str:
    """``seed S, model M`` of an entry's request, for messages."""
    request = entry.get("request") or {}
    return f"seed {request.get('seed')}, model {request.get('model')}"


def judge(
    stored: list[Entry],
    current: list[Entry],
    *,
    threaded: bool = False,
    same_output: Callable[[Entry, Entry], bool] | None = None,
    index_of: Callable[[int], int] | None = None,
    unseeded: Callable[[Entry], bool] | None = None,
) -> Judgement:
    """Walk the paired calls in order and find the first divergence.

    ``same_output(old, new)`` decides output equality (the compare hook; exact
    by default, every choice of an ``n > 1`` call). ``index_of(position)`` maps
    a position in ``current`` to the call's issue index for messages (the
    position itself by default). ``unseeded(new)``: whether this run's call
    carried no seed after pinning, so that a changed output under the same
    backend identity only varied (none by default).
    """
    same = same_output or (lambda old, new: same_answers(old, new, str.__eq__))
    position_of = {id(entry): position for position, entry in enumerate(current)}
    judgement = Judgement()
    paired = pairs(stored, current, threaded=threaded)
    for step, (old, new) in enumerate(paired):
        if old is None or new is None:
            judgement.divergence = Divergence(
                "count", f"the test made {len(current)} call(s), the snapshot has {len(stored)}"
            )
            _consequences(judgement, paired[step + 1 :])
            return judgement
        position = position_of[id(new)]
        index = index_of(position) if index_of else position
        where = f"call {index} ({label(new)})"
        keys = changed_keys(old, new)
        if keys:
            shown = "; ".join(
                f"{k}: {(old.get('request') or {}).get(k)!r} -> {(new.get('request') or {}).get(k)!r}"
                for k in keys
            )
            judgement.divergence = Divergence(
                "request",
                f"{where}: request parameters changed since the snapshot: {shown}",
                position,
                None,
                old,
                new,
            )
            return judgement
        old_fp, new_fp = identity(old), identity(new)
        fingerprint_changed = old_fp is not None and new_fp is not None and old_fp != new_fp
        change = FingerprintChange(
            index,
            (new.get("request") or {}).get("seed"),
            old_fp,
            new_fp,
            "same output",
            _text(old.get("response_model")),
            _text(new.get("response_model")),
        )
        if same(old, new):
            if fingerprint_changed:
                judgement.noted.append(change)  # its note names a changed model too
            elif model_note(change):
                judgement.model_changes.append(change)
            continue
        change.diff = diff(answer_text(old), answer_text(new))
        if not fingerprint_changed and unseeded is not None and unseeded(new):
            judgement.divergence = Divergence(
                "varied",
                f"{where}: the output varied (no seed){model_note(change)}:\n{change.diff}",
                position,
                change,
                old,
                new,
            )
            _consequences(judgement, paired[step + 1 :], index_of=index_of, position_of=position_of)
            return judgement
        if not fingerprint_changed:
            judgement.divergence = Divergence(
                "output",
                f"{where}: the output changed but the fingerprint did not "
                f"(snapshot: {old_fp}, this run: {new_fp}){model_note(change)}:\n{change.diff}",
                position,
                change,
                old,
                new,
            )
            return judgement
        judgement.divergence = Divergence(
            "backend", f"{where}: {fingerprint_note(change)}", position, change, old, new
        )
        _consequences(judgement, paired[step + 1 :], index_of=index_of, position_of=position_of)
        return judgement
    return judgement


def _consequences(
    judgement: Judgement,
    rest: list[tuple[Entry | None, Entry | None]],
    *,
    index_of: Callable[[int], int] | None = None,
    position_of: dict[int, int] | None = None,
) -> None:
    extra_now = sum(1 for old, new in rest if old is None)
    extra_before = sum(1 for old, new in rest if new is None)
    for old, new in rest:
        if old is None or new is None:
            continue
        position = (position_of or {}).get(id(new), 0)
        index = index_of(position) if index_of else position
        keys = changed_keys(old, new)
        if keys:
            judgement.consequences.append(f"call {index}: request changed ({', '.join(keys)})")
        elif not same_answers(old, new, str.__eq__):
            judgement.consequences.append(f"call {index}: output changed")
    if extra_now:
        judgement.consequences.append(f"{extra_now} call(s) more than the snapshot")
    if extra_before:
        judgement.consequences.append(f"{extra_before} call(s) fewer than the snapshot")


#: Output lines that are calls, not text: under a tolerance they stay exact (``answers.py`` writes them).
_CALL_LINES = ("tool_call ", "function_call: ")


def split_calls(text: str) -> tuple[str, list[str]]:
    """An output's text without its tool-call lines, and those lines in order."""
    lines = text.split("\n")
    calls = [line for line in lines if line.startswith(_CALL_LINES)]
    return "\n".join(line for line in lines if not line.startswith(_CALL_LINES)), calls


def _parsed(text: str) -> tuple[bool, Any]:
    """``(True, value)`` for a JSON object or array (structured output); a bare word or number is text."""
    try:
        value = json.loads(text)
    except ValueError:
        return False, None
    return isinstance(value, dict | list), value


def tolerance_score(expected: str, actual: str, similarity: Callable[[str, str], float]) -> float:
    """How alike two outputs are under ``llm_tolerance``, from 0.0 to 1.0.

    Tool-call lines stay exact: any difference there scores 0.0. Texts that
    both parse as JSON (structured output) and are equal parsed score 1.0;
    otherwise ``similarity`` of the texts (without the tool-call lines) decides.
    """
    if expected == actual:
        return 1.0
    old_text, old_calls = split_calls(expected)
    new_text, new_calls = split_calls(actual)
    if old_calls != new_calls:
        return 0.0
    old_ok, old_value = _parsed(old_text)
    new_ok, new_value = _parsed(new_text)
    if old_ok and new_ok and old_value == new_value:
        return 1.0
    return float(similarity(old_text, new_text))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def model_note(change: FingerprintChange) -> str:
    """``; the response's model changed too: a -> b`` when it did."""
    if change.old_model is not None and change.new_model is not None and change.old_model != change.new_model:
        return f"; the response's model changed too: {change.old_model} -> {change.new_model}"
    return ""


def fingerprint_note(change: FingerprintChange) -> str:
    """``system_fingerprint old -> new`` (and the model, when it changed too)."""
    return f"system_fingerprint {change.old} -> {change.new}{model_note(change)}"
