"""Each ``seeded_llm`` test's verdict, decided after its body ran to its end.

The table (DESIGN.md, "The verdict for each test"), per call:

====================================  ============  =========================
fingerprint vs snapshot               output equal  output differs
====================================  ============  =========================
same (or either is ``None``)          pass          fail, with a diff
changed                               pass, noted   the policy: skip/warn/fail
no snapshot yet                       fail: run with ``--snapshot-update``
====================================  ============  =========================

It runs inside the call phase (a ``pytest_runtest_call`` wrapper), after the
body, so every call was made and recorded before a skip, and a
``SeedReproFingerprintWarning`` is an ordinary warning of the test (an error
under ``-W error``), never an INTERNALERROR.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pytest_seedrepro.snapshots as snapshots
from pytest_seedrepro.calls import Call, canonical, from_threads, in_files_order
from pytest_seedrepro.files import UnreadableFile, read_text
from pytest_seedrepro.options import POLICIES
from pytest_seedrepro.session import RUN_STATE, TEST_STATE, TestState
from pytest_seedrepro.warnings import SeedReproFingerprintWarning


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


def refresh_command(nodeid: str, mode: str = "rerecord") -> str:
    """The command that accepts a new backend's output for one test.

    ``live`` suites keep no recordings, so they refresh the snapshot alone;
    every other mode re-records too, so recording and snapshot agree.
    """
    mode = "live" if mode == "live" else "rerecord"
    return f"pytest --seedrepro-mode={mode} --snapshot-update '{nodeid}'"


def _normalize(item: pytest.Item, output: str, call: Call) -> str:
    """Run the ``pytest_seedrepro_normalize`` chain of ``item``'s scope, each step through pluggy.

    Each implementation must see the previous one's result, which a single
    pluggy call cannot give (every implementation gets the same arguments).
    So pluggy is called once per implementation, in its own order, with a
    caller that holds that implementation and the wrappers: ``tryfirst``,
    ``trylast``, ``wrapper=True`` and ``conftest.py`` scoping all apply.
    """
    scoped = item.ihook.pytest_seedrepro_normalize
    impls = scoped.get_hookimpls()
    if not impls:
        return output
    manager = item.config.pluginmanager
    everywhere = {impl.plugin for impl in item.config.hook.pytest_seedrepro_normalize.get_hookimpls()}
    out_of_scope = everywhere - {impl.plugin for impl in impls}
    steps = [impl for impl in impls if not (impl.wrapper or impl.hookwrapper)]
    # pluggy calls the last of its list first (tryfirst ones are at the end).
    for step in reversed(steps) if steps else [None]:
        others = {impl.plugin for impl in steps if impl is not step}
        caller = manager.subset_hook_caller("pytest_seedrepro_normalize", [*out_of_scope, *others])
        result = caller(output=output, call=call)
        if result is not None:
            output = str(result)
    return output


def snapshot_entry(item: pytest.Item, call: Call) -> dict[str, Any]:
    """What the snapshot keeps of one call: no ids, no timestamps, no transport keys."""
    entry: dict[str, Any] = {"endpoint": call.endpoint, "system_fingerprint": call.system_fingerprint}
    identity = item.ihook.pytest_seedrepro_fingerprint(call=call)
    if identity is not None and identity != call.system_fingerprint:
        entry["backend"] = str(identity)
    entry["response_model"] = call.model
    if call.status is not None:
        entry["status"] = call.status  # a recorded client error (400, 404, 422): its message is the output
    entry["request"] = {k: v for k, v in sorted(call.request.items()) if k not in snapshots.TRANSPORT_KEYS}
    entry["output"] = _normalize(item, call.output or "", call)
    return dict(snapshots.storable(entry))


def _identity(entry: dict[str, Any]) -> str | None:
    value = entry.get("backend", entry.get("system_fingerprint"))
    return None if value is None else str(value)


def _diff(old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "snapshot", "this run", lineterm="", n=2)
    return "\n".join("    " + line for line in lines)


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
    state.problems = problem_lines(item.nodeid, state.calls)
    if body_error is not None or state.problems:
        # Nothing of a failed test is written, and its snapshot stays as it is.
        state.broken = True
        if body_error is None:
            pytest.fail("\n".join(state.problems), pytrace=False)
        state.explain = id(body_error) in state.raised and bool(state.problems)
        return
    state.body_done = True
    if state.snapshot is None:
        return  # syrupy's plugin is off: pinned, recorded and replayed, not judged
    assertion = state.snapshot
    location = assertion.extension.get_location(test_location=assertion.test_location, index=assertion.index)
    try:
        stored_text = read_text(Path(location), what="the snapshot")
    except UnreadableFile as exc:
        state.broken = True
        message = f"seedrepro: {item.nodeid}: {exc}"
    else:
        message = ""
    if message:
        pytest.fail(message, pytrace=False)
    if not state.calls and stored_text is None:
        return  # nothing to keep: no file is written for a test that made no call
    current = [snapshot_entry(item, call) for call in in_files_order(state.calls)]
    rendered = snapshots.render(item.nodeid, current)
    if assertion.update_snapshots:
        state.snapshot_value = rendered  # syrupy writes it when it differs
        return
    if stored_text is None:
        state.snapshot_value = rendered  # counted by syrupy as a missing snapshot
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
    _judge(item, state, stored, current, rendered)


def _pairs(
    stored: list[dict[str, Any]], current: list[dict[str, Any]], threaded: bool
) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """Pair this run's calls with the snapshot's: by position, or by request for calls from threads."""
    if not threaded:
        return [
            (stored[i] if i < len(stored) else None, current[i] if i < len(current) else None)
            for i in range(max(len(stored), len(current)))
        ]
    unmatched = list(stored)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    for new in current:
        key = (new.get("endpoint"), canonical(new.get("request")))
        same = [old for old in unmatched if (old.get("endpoint"), canonical(old.get("request"))) == key]
        exact = [old for old in same if old.get("output") == new.get("output")]
        best: dict[str, Any] | None = (exact or same)[0] if (exact or same) else None
        if best is None and unmatched:
            best = unmatched[0]
        if best is not None:
            unmatched.remove(best)
        pairs.append((best, new))
    pairs.extend((old, None) for old in unmatched)
    return pairs


def _judge(
    item: pytest.Item,
    state: TestState,
    stored: list[dict[str, Any]],
    current: list[dict[str, Any]],
    rendered: str,
) -> None:
    nodeid = item.nodeid
    failures: list[str] = []
    if len(stored) != len(current):
        failures.append(f"the test made {len(current)} call(s), the snapshot has {len(stored)}")
    call_of = {id(entry): call for entry, call in zip(current, in_files_order(state.calls), strict=True)}
    for old, new in _pairs(stored, current, from_threads(state.calls)):
        if old is None or new is None:
            continue
        call = call_of[id(new)]
        where = f"call {call.index} (seed {call.seed}, model {call.request.get('model')})"
        old_request, new_request = old.get("request") or {}, new["request"]
        changed = sorted(
            k for k in old_request.keys() | new_request.keys() if old_request.get(k) != new_request.get(k)
        )
        if changed:
            shown = "; ".join(f"{k}: {old_request.get(k)!r} -> {new_request.get(k)!r}" for k in changed)
            failures.append(f"{where}: request parameters changed since the snapshot: {shown}")
            continue
        old_output, new_output = str(old.get("output") or ""), new["output"]
        verdict = item.ihook.pytest_seedrepro_compare(expected=old_output, actual=new_output, call=call)
        same_output = (old_output == new_output) if verdict is None else bool(verdict)
        old_fp, new_fp = _identity(old), _identity(new)
        fingerprint_changed = old_fp is not None and new_fp is not None and old_fp != new_fp
        old_model = old.get("response_model")
        change = FingerprintChange(
            call.index,
            call.seed,
            old_fp,
            new_fp,
            "same output",
            None if old_model is None else str(old_model),
            new.get("response_model"),
        )
        if same_output:
            if fingerprint_changed:
                state.fingerprint_changes.append(change)
            continue
        change.diff = _diff(old_output, new_output)
        if not fingerprint_changed:
            model_note = _model_note(change)
            failures.append(
                f"{where}: the output changed but the fingerprint did not "
                f"(snapshot: {old_fp}, this run: {new_fp}){model_note}:\n{change.diff}"
            )
            continue
        change.outcome = _policy(item, state, change, call)
        state.fingerprint_changes.append(change)
    if failures:
        state.snapshot_value = rendered  # syrupy counts it as a failed snapshot; nothing is written
        pytest.fail(
            f"seedrepro: {nodeid}: "
            + "\n".join(failures)
            + f"\nIf the new output is right: pytest --snapshot-update '{nodeid}'",
            pytrace=False,
        )
    by_policy = {c.outcome for c in state.fingerprint_changes}
    for policy in ("fail", "skip", "warn"):
        if policy in by_policy:
            mode = item.config.stash[RUN_STATE].settings.mode
            changed = [c for c in state.fingerprint_changes if c.outcome == policy]
            message = _change_message(nodeid, changed, mode)
            if policy == "fail":
                pytest.fail(message, pytrace=False)
            if policy == "skip":
                state.keep_files = True
                pytest.skip(message)
            warnings.warn(SeedReproFingerprintWarning(message), stacklevel=1)
            return


def _model_note(change: FingerprintChange) -> str:
    if change.old_model is not None and change.new_model is not None and change.old_model != change.new_model:
        return f"; the response's model changed too: {change.old_model} -> {change.new_model}"
    return ""


def _change_message(nodeid: str, changes: list[FingerprintChange], mode: str) -> str:
    parts = [
        f"call {c.index} (seed {c.seed}): system_fingerprint {c.old} -> {c.new}{_model_note(c)}"
        for c in changes
    ]
    return (
        f"seedrepro: {nodeid}: the backend changed and the output with it ({'; '.join(parts)}). "
        f"Refresh with: {refresh_command(nodeid, mode)}"
    )


def annotate_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """Tidy the call-phase report: the plugin's one-line cause, the skip's location, the summary's data."""
    state = item.stash.get(TEST_STATE, None)
    if state is None or report.when != "call":
        return
    if report.failed and state.explain:
        # The body ended on an error the plugin caused or explained (a missing
        # recording, an API error): show the cause, not the SDK's traceback.
        report.longrepr = "\n".join(state.problems)
    if report.skipped and state.keep_files and isinstance(report.longrepr, tuple):
        # Point the skip at the test, not at this module.
        _, line, _ = item.location
        report.longrepr = (str(item.path), (line or 0) + 1, report.longrepr[2])
    report.seedrepro = summary_of(state, report)  # type: ignore[attr-defined]


def summary_of(state: TestState, report: pytest.TestReport) -> dict[str, Any]:
    """The JSON-able data the terminal summary needs (it travels from xdist workers on the report)."""
    calls = [c for c in state.calls if c.replayed is not None]
    return {
        "replayed": sum(1 for c in calls if c.replayed),
        "live": sum(1 for c in calls if not c.replayed),
        "tokens": sum(c.total_tokens for c in calls if not c.replayed),
        "replayed_tokens": sum(c.total_tokens for c in calls if c.replayed),
        "fingerprints": sorted({c.system_fingerprint for c in calls if c.system_fingerprint}),
        "disagreeing_streams": [list(c.chunk_fingerprints) for c in calls if len(c.chunk_fingerprints) > 1],
        "changes": [
            {
                "old": c.old,
                "new": c.new,
                "outcome": c.outcome,
                "old_model": c.old_model,
                "new_model": c.new_model,
            }
            for c in state.fingerprint_changes
        ],
        "unpinned": sum(1 for c in state.calls if not c.pinned),
    }
