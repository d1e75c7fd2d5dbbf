"""Each ``seeded_llm`` test's verdict, decided after its body ran to its end.

The table (README, "The verdict"), per call; a test of several calls is
judged by its first divergence from the snapshot (``judgement.py``):

====================================  ============  =========================
fingerprint vs snapshot               output equal  output differs
====================================  ============  =========================
same (or either is ``None``)          pass          fail, with a diff
changed                               pass, noted   the policy: skip/warn/fail
no snapshot yet                       fail: run with ``--snapshot-update``
====================================  ============  =========================

A call that carried no seed (the Responses API, ``seed(None)``) and whose
output differs under the same fingerprint *varied*: the test's assertions
decide, and it is listed. Under ``@pytest.mark.llm_tolerance`` "output equal"
means at least that similar (``judgement.tolerance_score``).

It runs inside the call phase (a ``pytest_runtest_call`` wrapper), after the
body, so every call was made and recorded before a skip, and a
``SeedReproFingerprintWarning`` is an ordinary warning of the test (an error
under ``-W error``), never an INTERNALERROR.

It decides only: what a call's snapshot entry holds is ``snapshots.snapshot_entry``,
and what the reports show of the verdict is ``report.py``'s.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

import pytest_seedrepro.snapshots as snapshots
from pytest_seedrepro import judgement
from pytest_seedrepro.calls import Call, from_threads, in_files_order
from pytest_seedrepro.decision import Verdict
from pytest_seedrepro.files import UnreadableFile
from pytest_seedrepro.judgement import FingerprintChange
from pytest_seedrepro.options import POLICIES, refresh_command, refresh_mode
from pytest_seedrepro.report import divergence_view
from pytest_seedrepro.session import RUN_STATE, TEST_STATE, TestState
from pytest_seedrepro.warnings import SeedReproFingerprintWarning


def _policy(item: pytest.Item, state: TestState, change: FingerprintChange, call: Call) -> str:
    chosen = item.ihook.pytest_seedrepro_fingerprint_changed(
        item=item, old=change.old, new=change.new, call=call
    )
    if chosen is not None:
        if chosen not in POLICIES:
            pytest.fail(
                f"seedrepro: {item.nodeid}: pytest_seedrepro_fingerprint_changed returned {chosen!r}; "
                f"expected one of {', '.join(POLICIES)} or None",
                pytrace=False,
            )
        return str(chosen)
    if state.pins.policy is not None:
        return state.pins.policy
    return item.config.stash[RUN_STATE].settings.on_fingerprint_change


def _repeat_figures(item: pytest.Item, state: TestState) -> None:
    from pytest_seedrepro import repeat

    def similarity(call: Call) -> Callable[[str, str], float]:
        def measure(a: str, b: str) -> float:
            given = item.ihook.pytest_seedrepro_similarity(a=a, b=b, call=call)
            return repeat.difflib_similarity(a, b) if given is None else float(given)

        return measure

    state.repeat_figures = [repeat.figures(call, similarity(call)) for call in state.calls if call.repeats]
    if state.pins.min_identical is not None:
        message = repeat.gate_message(item.nodeid, state.pins.min_identical, state.repeat_figures)
        if message:
            pytest.fail(message, pytrace=False)


def _similarity(item: pytest.Item, call: Call) -> Callable[[str, str], float]:
    """How alike two outputs of ``call`` are: ``pytest_seedrepro_similarity`` if it answers, else difflib."""
    from pytest_seedrepro import repeat

    def measure(a: str, b: str) -> float:
        given = item.ihook.pytest_seedrepro_similarity(a=a, b=b, call=call)
        return repeat.difflib_similarity(a, b) if given is None else float(given)

    return measure


def problem_lines(nodeid: str, calls: list[Call]) -> list[str]:
    """One line per call that has no usable answer: the cause, and for a missing recording what to do."""
    return [f"seedrepro: {nodeid}: call {call.index}: {call.error}" for call in calls if call.error]


def after_body(item: pytest.Item, *, body_error: BaseException | None) -> None:
    """Decide the test once its body is over: fail, skip or warn, and what its snapshot will be.

    Nothing is written here: ``writes.finish`` writes the recording and
    asserts the snapshot once the whole test (tear-down included) is over.
    """
    state = item.stash.get(TEST_STATE, None)
    if state is None:
        return
    if state.settle is not None:
        state.settle()
    state.problems = problem_lines(item.nodeid, state.calls)
    if body_error is not None or state.problems:
        # Nothing of a failed test is written (its call phase fails), and its snapshot stays as it is.
        if body_error is None:
            pytest.fail("\n".join(state.problems), pytrace=False)
        state.explain = id(body_error) in state.raised and bool(state.problems)
        return
    judge(item, state)


def judge(item: pytest.Item, state: TestState) -> None:
    """Judge a test whose body is over against its snapshot: fail, skip or warn, or pass.

    A draws test is judged once, after its last draw, whatever its draws' bodies did.
    """
    if item.config.stash[RUN_STATE].settings.repeat > 1:
        _repeat_figures(item, state)  # the seed experiment: nothing is snapshotted or judged
        return
    if state.snapshot is None:
        return  # syrupy's plugin is off: pinned, recorded and replayed, not judged
    assertion = state.snapshot
    try:
        location, stored_text = snapshots.read_stored(assertion)
    except UnreadableFile as exc:
        message = f"seedrepro: {item.nodeid}: {exc}"
    else:
        message = ""
    if message:
        pytest.fail(message, pytrace=False)
    if not state.calls and (stored_text is None or assertion.update_snapshots):
        # No file for a test that made no call: under --snapshot-update its snapshot
        # is left unused, and syrupy removes it.
        state.verdict = "no-calls"
        return
    ordered = in_files_order(state.calls)
    current = snapshots.number_ids(
        [snapshots.snapshot_entry(item, call) for call in ordered],
        [i for call in ordered for i in call.tool_call_ids],
        [i for call in ordered for i in call.item_ids],
    )
    state.snapshot_entries = current
    if assertion.update_snapshots:
        state.snapshot_value = snapshots.render(item.nodeid, current)  # syrupy writes it when it differs
        if stored_text is None:
            state.verdict = "new"
        else:
            state.verdict = "identical" if state.snapshot_value == stored_text else "changed"
        return
    if stored_text is None:
        state.verdict = "new"
        pytest.fail(
            f"seedrepro: {item.nodeid}: no snapshot yet ({location}); run with --snapshot-update to write it",
            pytrace=False,
        )
    state.snapshot_value = snapshots.StoredText(stored_text)  # in use, left as it is
    try:
        stored = snapshots.parse(stored_text, location)
    except snapshots.CorruptSnapshot as exc:
        message = (
            f"seedrepro: {item.nodeid}: cannot read the snapshot {exc}. Fix or delete it, then "
            f"run with --snapshot-update"
        )
    if message:
        pytest.fail(message, pytrace=False)
    _judge(item, state, stored, current)


def _judge(
    item: pytest.Item,
    state: TestState,
    stored: list[dict[str, Any]],
    current: list[dict[str, Any]],
) -> None:
    nodeid = item.nodeid
    ordered = in_files_order(state.calls)

    call_of = {id(entry): call for entry, call in zip(current, ordered, strict=True)}
    equivalent: list[bool] = []  # a hook called a different output equal: the snapshot would change
    threshold = state.pins.tolerance
    tolerated: dict[int, float] = {}  # call index -> its lowest score among choices not exactly equal

    def same_output(old: dict[str, Any], new: dict[str, Any]) -> bool:
        call = call_of[id(new)]
        scores: list[float] = []

        def same_text(expected: str, actual: str) -> bool:  # the compare hook, per choice
            verdict = item.ihook.pytest_seedrepro_compare(expected=expected, actual=actual, call=call)
            if verdict is not None and bool(verdict) and expected != actual:
                equivalent.append(True)
            if verdict is None and threshold is not None and expected != actual:
                score = judgement.tolerance_score(expected, actual, _similarity(item, call))
                scores.append(score)
                return score >= threshold
            return (expected == actual) if verdict is None else bool(verdict)

        same = judgement.same_answers(old, new, same_text)
        if same and scores:
            tolerated[call.index] = min(scores)
        return same

    found = judgement.judge(
        stored,
        current,
        threaded=from_threads(state.calls),
        same_output=same_output,
        index_of=lambda position: ordered[position].index,
        # No seed after pinning (the Responses API, seed(None)): each answer is a fresh sample.
        unseeded=lambda new: call_of[id(new)].pinned and "seed" not in call_of[id(new)].request,
    )
    state.fingerprint_changes.extend(found.noted)
    state.model_changes.extend(found.model_changes)
    divergence = found.divergence
    # Only the calls the walk judged equal (a varied call's consequences are not judged).
    judged = divergence.position if divergence is not None and divergence.position is not None else None
    state.tolerated = [
        {"call": index, "similarity": score, "threshold": threshold}
        for index, score in sorted(tolerated.items())
        if judged is None or index < ordered[judged].index
    ]
    if divergence is not None:
        state.divergence = divergence_view(divergence, found.consequences)
    if divergence is None or divergence.kind == "varied":
        if divergence is not None:
            assert divergence.change is not None
            state.varied = [divergence.change.index]
        state.verdict = (
            "varied"
            if divergence is not None
            else "fingerprint-changed"
            if found.noted
            else "equivalent"
            if equivalent
            else "tolerated"
            if state.tolerated
            else "identical"
        )
        return
    if divergence.kind != "backend":
        state.verdict = "regression"  # nothing is written; the snapshot is kept as it is
        # The mode in use: without it a `live` suite's command would replay, with no recording;
        # a test that has one is refreshed with it (options.refresh_mode).
        mode = item.config.stash[RUN_STATE].settings.mode
        if mode == "live":
            mode = refresh_mode(mode, _has_recording(state))
        pytest.fail(
            f"seedrepro: {nodeid}: {divergence.message}\n"
            f"If the new output is right: pytest --seedrepro-mode={mode} --snapshot-update '{nodeid}'",
            pytrace=False,
        )
    change = divergence.change
    assert change is not None and divergence.position is not None
    change.outcome = _policy(item, state, change, ordered[divergence.position])
    state.verdict = _DRIFTS[change.outcome]
    state.fingerprint_changes.append(change)
    mode = refresh_mode(item.config.stash[RUN_STATE].settings.mode, _has_recording(state))
    message = _change_message(nodeid, change, found.consequences, mode)
    if change.outcome == "fail":
        pytest.fail(message, pytrace=False)
    if change.outcome == "skip":
        pytest.skip(message)
    warnings.warn(SeedReproFingerprintWarning(message), stacklevel=1)


def _has_recording(state: TestState) -> bool:
    """The test has a recording on disk (one a ``live`` run neither reads nor writes)."""
    return state.recording is not None and state.recording.path.is_file()


_DRIFTS: dict[str, Verdict] = {"skip": "drift-skip", "warn": "drift-warn", "fail": "drift-fail"}


def _change_message(nodeid: str, change: FingerprintChange, consequences: list[str], mode: str) -> str:
    after = f"; after it, its consequences: {'; '.join(consequences)}" if consequences else ""
    return (
        f"seedrepro: {nodeid}: the backend changed and the output with it "
        f"(call {change.index} (seed {change.seed}): {judgement.fingerprint_note(change)}{after}). "
        f"Refresh with: {refresh_command(nodeid, mode)}"
    )
