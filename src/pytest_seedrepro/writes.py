"""The end of a ``seeded_llm`` test: write its recording and snapshot, or keep both as they were.

One rule, in one place: a test's files are written only once the whole test
(set-up, body, verdict, tear-down) is over and nothing failed. A test that
failed anywhere, or was skipped for a fingerprint change, keeps its recording
and its snapshot byte for byte, also under ``--snapshot-update`` (syrupy is
told the snapshot is in use, so it neither reports it unused nor deletes it).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_seedrepro.files import NotWritten, UnreadableFile
from pytest_seedrepro.session import TEST_STATE


def finish(item: pytest.Item, teardown: pytest.TestReport) -> None:
    """Called with the tear-down report, after every fixture of the test was torn down."""
    state = item.stash.get(TEST_STATE, None)
    if state is None:
        return
    intact = state.body_done and not state.broken and not state.keep_files and teardown.passed
    if intact and state.recording is not None:
        try:
            state.recording.write()
        except NotWritten as exc:
            intact = False
            teardown.outcome = "failed"
            teardown.longrepr = f"seedrepro: {item.nodeid}: {exc}"
    if state.snapshot is None:
        return
    if intact and state.snapshot_value is not None:
        state.snapshot == state.snapshot_value  # noqa: B015 - syrupy writes it under --snapshot-update
    else:
        keep_snapshot(state.snapshot)


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
