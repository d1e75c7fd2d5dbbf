"""Deciding each ``seeded_llm`` test's outcome after its body ran."""

from __future__ import annotations

import pytest

from pytest_seedrepro.fixture import TEST_STATE


def judge(item: pytest.Item, report: pytest.TestReport) -> None:
    """Turn what the plugin saw during the call phase into the test's outcome."""
    state = item.stash.get(TEST_STATE, None)
    if state is None or report.when != "call":
        return
    if state.problems and report.passed:
        # The code under test swallowed the exception; the test still fails.
        report.outcome = "failed"
        report.longrepr = "\n".join(state.problems)
    elif state.problems and report.failed and _failed_on_missing_recording(report):
        report.longrepr = "\n".join(state.problems)


def _failed_on_missing_recording(report: pytest.TestReport) -> bool:
    return "MissingRecording" in str(report.longrepr)
