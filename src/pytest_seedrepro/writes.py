"""The end of a ``seeded_llm`` test: write its recording and snapshot, or keep both as they were.

What is written is decided in one place, ``decision.decide``, on plain data:
this module only gathers that data (the mode, ``--snapshot-update``, the
verdict, each phase's outcome) once the whole test (set-up, body, verdict,
tear-down) is over, and carries the answer out. A kept snapshot is asserted
back unchanged, so syrupy neither reports it unused nor deletes it under
``--snapshot-update``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_seedrepro import decision, drift, review
from pytest_seedrepro.files import NotWritten, UnreadableFile
from pytest_seedrepro.session import RUN_STATE, TEST_STATE, TestState


def finish(item: pytest.Item, teardown: pytest.TestReport) -> decision.Writes | None:
    """Called with the tear-down report, after every fixture of the test was torn down.

    Returns what was decided (None for a test without ``seeded_llm``).
    """
    state = item.stash.get(TEST_STATE, None)
    if state is None:
        return None
    recording = state.recording
    assertion = state.snapshot
    writes = decision.decide(
        mode=cast(decision.Mode, item.config.stash[RUN_STATE].settings.mode),  # options.resolve checked it
        update=bool(assertion is not None and assertion.update_snapshots),
        verdict=state.verdict,
        setup_failed=state.outcomes.get("setup") != "passed",
        body_failed=decision.body_failed(state.outcomes.get("call"), state.verdict),
        teardown_failed=not teardown.passed,
        recording_changed=recording is not None and recording.has_changes,
        snapshot_identical=lambda: _snapshot_identical(item, state),
    )
    mode = item.config.stash[RUN_STATE].settings.mode
    # What accepting would write, taken before this run's own writes empty the recording's pending save.
    change = _pending_change(item, state, writes.pending) if writes.pending and mode != "replay" else None
    if writes.write_recording:
        try:
            recording.write()
        except NotWritten as exc:
            teardown.outcome = "failed"
            teardown.longrepr = f"seedrepro: {item.nodeid}: {exc}"
            # Written together or not at all: the snapshot stays as it is.
            writes = dataclasses.replace(writes, write_snapshot=False)
    if mode != "replay":  # a replay run neither reads nor changes the pending changes
        _update_pending(item, state, teardown, change)
    if assertion is None:
        return writes
    import pytest_seedrepro.snapshots as snapshots  # syrupy's plugin is loaded: costs nothing now

    if writes.write_snapshot:
        if state.snapshot_value is not None:
            assertion == state.snapshot_value  # noqa: B015 - syrupy writes it under --snapshot-update
        # else the test made no call: its snapshot is left unused, and --snapshot-update removes it
    elif state.verdict == "regression" and not assertion.update_snapshots and state.snapshot_entries:
        # syrupy counts it as a failed snapshot; without --snapshot-update it writes nothing
        # (and --snapshot-update-new-only none that exists). Rendered only for a regression.
        assertion == snapshots.render(item.nodeid, state.snapshot_entries)  # noqa: B015
    elif isinstance(state.snapshot_value, snapshots.StoredText):
        assertion == state.snapshot_value  # noqa: B015 - in use, rewrites nothing; already read
    else:
        keep_snapshot(assertion)
    return writes


def _pending_change(item: pytest.Item, state: TestState, kind: str) -> dict[str, Any] | None:
    """The files ``--snapshot-update`` would have written for this test, and what changed, as JSON data.

    None when there is nothing to write (no recording change and no snapshot).
    """
    root = item.config.rootpath
    entry: dict[str, Any] = {"nodeid": item.nodeid, "kind": kind, "recording": None, "snapshot": None}
    recording = state.recording
    if recording is not None and recording.has_changes:
        entry["recording"] = {"path": _relative(recording.path, root), "text": recording.text()}
    if state.snapshot is not None and state.snapshot_entries is not None:
        import pytest_seedrepro.snapshots as snapshots

        assertion = state.snapshot
        location = assertion.extension.get_location(
            test_location=assertion.test_location, index=assertion.index
        )
        entry["snapshot"] = {
            "path": _relative(Path(location), root),
            "text": snapshots.render(item.nodeid, state.snapshot_entries),
        }
    if entry["recording"] is None and entry["snapshot"] is None:
        return None
    divergence = state.divergence or {}
    first = state.calls[0] if state.calls else None
    entry["divergence"] = state.divergence
    entry["old"] = {"fingerprint": divergence.get("old_fingerprint"), "model": divergence.get("old_model")}
    entry["new"] = {
        "fingerprint": divergence.get("new_fingerprint", first.system_fingerprint if first else None),
        "model": divergence.get("new_model", first.model if first else None),
    }
    cache = getattr(item.config, "cache", None)
    cachedir = getattr(cache, "_cachedir", None)  # pytest's Cache keeps its directory there
    entry["drifted"] = str(Path(cachedir) / "v" / drift.CACHE_KEY) if cachedir is not None else None
    return entry


def _relative(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root).as_posix()
    except ValueError:  # a --seedrepro-cassette-dir or --snapshot-dirname outside the rootdir
        return str(path.absolute())


def _update_pending(
    item: pytest.Item, state: TestState, teardown: pytest.TestReport, change: dict[str, Any] | None
) -> None:
    """Keep this run's pending change (replacing an older one), or forget it once the test passed again.

    The kind travels on the tear-down report, so the summary (on the xdist controller) counts it.
    """
    root = item.config.rootpath
    if change is not None:
        try:
            review.keep(root, change)
        except NotWritten as exc:
            item.config.stash[RUN_STATE].unwritten.append(str(exc))
            return
        teardown.seedrepro_pending = change["kind"]  # type: ignore[attr-defined]
        return
    passed = teardown.passed and all(state.outcomes.get(when) == "passed" for when in ("setup", "call"))
    if passed:
        review.drop(root, item.nodeid)


def _snapshot_identical(item: pytest.Item, state: TestState) -> bool:
    """Whether the snapshot ``--snapshot-update`` would write is the stored one, byte for byte."""
    import pytest_seedrepro.snapshots as snapshots

    stored = state.snapshot_value
    if state.snapshot_entries is None or not isinstance(stored, snapshots.StoredText):
        return False
    return snapshots.render(item.nodeid, state.snapshot_entries) == stored.text


def keep_snapshot(assertion: Any) -> None:
    """Tell syrupy the test's snapshot is in use, unchanged (no-op when there is none)."""
    import pytest_seedrepro.snapshots as snapshots

    try:
        _, stored = snapshots.read_stored(assertion)
    except UnreadableFile:
        return  # nothing syrupy could delete or rewrite either
    if stored is not None:
        assertion == snapshots.StoredText(stored)  # noqa: B015 - marks it used, rewrites nothing


def keep_snapshot_of_unstarted(item: pytest.Item) -> None:
    """Keep the snapshot of a test that failed at set-up before ``seeded_llm`` got its snapshot.

    Another fixture of the test failed first. syrupy would report the test's
    snapshot unused (and delete it under ``--snapshot-update``), so it is
    asserted back unchanged.
    """
    if not item.config.pluginmanager.hasplugin("syrupy"):
        return
    import pytest_seedrepro.snapshots as snapshots

    # pytest.Function's FixtureRequest, for syrupy's fixture should its session
    # be out of reach; pytest offers no public way to ask for a fixture once
    # set-up failed. Guarded: without either, nothing is done.
    try:
        assertion = snapshots.assertion_for(item, getattr(item, "_request", None))
    except Exception:
        return
    keep_snapshot(assertion)
