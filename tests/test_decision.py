"""The rule for what a test writes (``decision.decide``), as a table over every combination.

The expected results are written out by hand below, from DESIGN's "What a
test writes", not derived from the implementation: a test's recording and
snapshot are written together and only when the run was accepted (the
snapshot ``--snapshot-update`` would write is the one on disk, or
``--snapshot-update`` accepted the change and nothing failed); a test with no
snapshot yet keeps its new recording; ``replay`` never writes a recording,
``live`` has none; a ``record``/``rerecord``/``live`` run leaves what it did
not write pending for review.
"""

from __future__ import annotations

import itertools

import pytest

from pytest_seedrepro import decision

MODES = ("replay", "record", "rerecord", "live")

# Each cell: what is written ("R" the recording, "S" the snapshot, "-" nothing),
# then ":kind" when a change is left pending. Per mode, without and with --snapshot-update.
#
#   case: (verdict, snapshot_identical(), the failing phase or None)
CASES: dict[str, tuple[decision.Verdict, bool, str | None]] = {
    "identical": ("identical", True, None),
    # Judged equal, but the file would change (another response model under the same fingerprint).
    "identical, snapshot differs": ("identical", False, None),
    "regression": ("regression", True, None),
    "drift, skipped": ("drift-skip", True, None),
    "drift, warned": ("drift-warn", True, None),
    "drift, failed": ("drift-fail", True, None),
    "fingerprint changed, output equal": ("fingerprint-changed", True, None),
    "equal by a compare hook": ("equivalent", True, None),
    # An unseeded call's output varied under the same backend: the test's assertions passed it.
    "varied, no seed": ("varied", True, None),
    # Counted equal under @pytest.mark.llm_tolerance, but not exactly equal.
    "within tolerance": ("tolerated", True, None),
    "no snapshot yet": ("new", True, None),
    "no calls": ("no-calls", True, None),
    "changed, under --snapshot-update": ("changed", True, None),
    "not judged": ("unjudged", True, None),  # syrupy's plugin is off, or the seed experiment ran
    "set-up failure": ("unjudged", True, "setup"),
    "body failure": ("unjudged", True, "body"),
    "tear-down failure": ("identical", True, "teardown"),
    # @pytest.mark.draws: fewer draws passed than the gate asks (the recording changed in record/rerecord).
    "draws gate failed": ("draws-failed", True, None),
    "draws gate failed, snapshot differs": ("draws-failed", False, None),
}

#                                         replay        record            rerecord          live
#                                         no-upd  upd   no-upd      upd   no-upd      upd   no-upd        upd
EXPECTED: dict[str, tuple[str, ...]] = {
    "identical": ("-", "S", "R", "RS", "R", "RS", "-", "S"),
    "identical, snapshot differs": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "regression": ("-", "S", "-:regression", "RS", "-:regression", "RS", "-:regression", "S"),
    "drift, skipped": ("-", "S", "-:drift-skipped", "RS", "-:drift-skipped", "RS", "-:drift-skipped", "S"),
    "drift, warned": ("-", "S", "-:drift-warned", "RS", "-:drift-warned", "RS", "-:drift-warned", "S"),
    "drift, failed": ("-", "S", "-:drift-failed", "RS", "-:drift-failed", "RS", "-:drift-failed", "S"),
    "fingerprint changed, output equal": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "equal by a compare hook": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "varied, no seed": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "within tolerance": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "no snapshot yet": ("-", "S", "R:new", "RS", "R:new", "RS", "-:new", "S"),
    "no calls": ("-", "S", "R", "RS", "R", "RS", "-", "S"),
    "changed, under --snapshot-update": ("-", "S", "-", "RS", "-", "RS", "-", "S"),
    "not judged": ("-", "-", "R", "R", "R", "R", "-", "-"),
    "set-up failure": ("-", "-", "-", "-", "-", "-", "-", "-"),
    "body failure": ("-", "-", "-", "-", "-", "-", "-", "-"),
    "tear-down failure": ("-", "-", "-", "-", "-", "-", "-", "-"),
    "draws gate failed": ("-", "-", "-:draws", "-:draws", "-:draws", "-:draws", "-", "-"),
    "draws gate failed, snapshot differs": (
        "-",
        "-",
        "-:draws",
        "-:draws",
        "-:draws",
        "-:draws",
        "-:draws",
        "-:draws",
    ),
}

TABLE = [
    pytest.param(
        case, mode, update, EXPECTED[case][2 * MODES.index(mode) + update], id=f"{case}-{mode}-{update}"
    )
    for case in CASES
    for mode in MODES
    for update in (False, True)
]


def _cell(writes: decision.Writes) -> str:
    written = ("R" if writes.write_recording else "") + ("S" if writes.write_snapshot else "")
    return (written or "-") + (f":{writes.pending}" if writes.pending else "")


def test_the_table_covers_every_case_mode_and_flag() -> None:
    assert set(EXPECTED) == set(CASES)
    assert {verdict for verdict, _, _ in CASES.values()} == set(decision.VERDICTS)
    assert len(TABLE) == len(CASES) * len(MODES) * 2 == 152


@pytest.mark.parametrize(("case", "mode", "update", "expected"), TABLE)
def test_what_a_test_writes(case: str, mode: decision.Mode, update: bool, expected: str) -> None:
    verdict, identical, failing = CASES[case]
    asked: list[bool] = []

    def snapshot_identical() -> bool:
        asked.append(True)
        return identical

    writes = decision.decide(
        mode=mode,
        update=update,
        verdict=verdict,
        setup_failed=failing == "setup",
        body_failed=failing == "body",
        teardown_failed=failing == "teardown",
        recording_changed=mode in ("record", "rerecord"),  # replay and live have no new recording
        snapshot_identical=snapshot_identical,
    )
    assert _cell(writes) == expected
    assert writes.keep_snapshot is not writes.write_snapshot
    # Rendering the snapshot to compare it costs time: only a passing record/rerecord run
    # with a changed recording and no --snapshot-update needs to know.
    needs_it = verdict == "identical" and failing is None and not update and mode in ("record", "rerecord")
    # A failed draws gate leaves its changes pending: live has no recording, so only the snapshot tells.
    needs_it = needs_it or (verdict == "draws-failed" and mode == "live")
    assert bool(asked) == needs_it


@pytest.mark.parametrize("failing", ["setup", "body", "teardown"])
def test_a_failure_in_any_phase_writes_nothing_whatever_the_verdict(failing: str) -> None:
    seen = 0
    for verdict, mode, update, changed in itertools.product(
        decision.VERDICTS, MODES, (False, True), (False, True)
    ):
        writes = decision.decide(
            mode=mode,
            update=update,
            verdict=verdict,
            setup_failed=failing == "setup",
            body_failed=failing == "body",
            teardown_failed=failing == "teardown",
            recording_changed=changed,
            snapshot_identical=lambda: True,
        )
        assert (writes.write_recording, writes.write_snapshot, writes.pending) == (False, False, None)
        assert writes.keep_snapshot
        seen += 1
    assert seen == 14 * 4 * 2 * 2


@pytest.mark.parametrize("verdict", ["identical", "new", "no-calls", "unjudged"])
@pytest.mark.parametrize("update", [False, True])
def test_a_recording_that_did_not_change_is_not_written_and_nothing_is_rendered(
    verdict: decision.Verdict, update: bool
) -> None:
    def never() -> bool:
        raise AssertionError("rendered a snapshot for a recording that did not change")

    for mode in MODES:
        writes = decision.decide(
            mode=mode,
            update=update,
            verdict=verdict,
            setup_failed=False,
            body_failed=False,
            teardown_failed=False,
            recording_changed=False,
            snapshot_identical=never,
        )
        assert not writes.write_recording


@pytest.mark.parametrize(
    ("call_outcome", "verdict", "failed"),
    [
        (None, "unjudged", True),  # the body never ran (--setup-only)
        ("passed", "identical", False),
        ("failed", "unjudged", True),  # the body raised, or a call had no usable answer
        ("skipped", "unjudged", True),  # pytest.skip() in the body
        ("failed", "identical", True),  # judged equal, then something else failed the call phase
        ("failed", "regression", False),  # the verdict's own failure
        ("failed", "new", False),  # "no snapshot yet"
        ("failed", "drift-fail", False),
        ("failed", "drift-warn", False),  # the warning made an error (-W error)
        ("skipped", "drift-skip", False),
        ("passed", "drift-warn", False),
        ("failed", "varied", True),  # varied passes: a failure is the body's (its assertions decide)
        ("failed", "tolerated", True),
        ("failed", "draws-failed", False),  # the draws gate's own failure
    ],
)
def test_which_call_phase_outcome_is_the_bodys(
    call_outcome: str | None, verdict: decision.Verdict, failed: bool
) -> None:
    assert decision.body_failed(call_outcome, verdict) is failed
