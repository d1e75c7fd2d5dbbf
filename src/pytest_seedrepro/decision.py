"""What a ``seeded_llm`` test writes once it is over: one rule, on plain data.

DESIGN, "What a test writes": a test's recording and snapshot are written
together, and only when the run was accepted, that is when the snapshot that
``--snapshot-update`` would write is identical to the one on disk, or when
``--snapshot-update`` accepted the change and nothing failed. Anything else
(skipped, warned, failed, errored, a fingerprint change with equal output, a
pass through a compare hook that leaves the snapshot different, a changed
response model) keeps both byte for byte. One exception keeps the first run
cheap: a test with no snapshot yet keeps its new recording (nothing that
exists changes), and ``--snapshot-update`` in ``replay`` then writes the
snapshot with no second call. ``replay`` never writes a recording; ``live``
has none.

No pytest, openai, vcrpy or syrupy here: ``writes.finish`` gathers the plain
data and carries the result out, and tests/test_decision.py checks the rule as
a table over every combination.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

Mode = Literal["replay", "record", "rerecord", "live"]

#: What the verdict found, once the body ran to its end (``verdict.after_body``):
#:
#: - ``identical``: judged, every call the same as the snapshot;
#: - ``regression``: an output, a request or the number of calls differs under the same fingerprint;
#: - ``drift-skip`` / ``drift-warn`` / ``drift-fail``: the output changed with the fingerprint (the policy);
#: - ``fingerprint-changed``: the fingerprint changed, every output is equal;
#: - ``equivalent``: passed because ``pytest_seedrepro_compare`` called a different output equal;
#: - ``varied``: an unseeded call's output changed under the same backend identity: the test's own
#:   assertions passed it (what followed it is its consequence), and the snapshot would differ;
#: - ``tolerated``: passed because ``llm_tolerance`` counted a different output equal;
#: - ``new``: no snapshot yet;
#: - ``no-calls``: the test made no call (and had no snapshot, or ``--snapshot-update`` is given);
#: - ``changed``: under ``--snapshot-update``, which does not judge: this run's snapshot is another;
#: - ``draws-failed``: a draws test (``@pytest.mark.draws``) had fewer passing draws than its gate;
#: - ``unjudged``: nothing judged the test: syrupy's plugin is off, the seed experiment
#:   (``--seedrepro-repeat``) ran, or the verdict was never reached (the test failed first).
Verdict = Literal[
    "identical",
    "regression",
    "drift-skip",
    "drift-warn",
    "drift-fail",
    "fingerprint-changed",
    "equivalent",
    "varied",
    "tolerated",
    "new",
    "no-calls",
    "changed",
    "draws-failed",
    "unjudged",
]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

#: The kind of change a run leaves pending (DESIGN, "Reviewing changes"), for ``seedrepro review``.
Pending = Literal["regression", "drift-skipped", "drift-warned", "drift-failed", "new", "draws"]

#: Verdicts under which the call phase passes: if it failed or was skipped
#: anyway, something else did it (the body, a hook, a warning made an error).
PASSING_VERDICTS: frozenset[Verdict] = frozenset(
    {
        "identical",
        "fingerprint-changed",
        "equivalent",
        "varied",
        "tolerated",
        "no-calls",
        "changed",
        "unjudged",
    }
)

_PENDING: dict[Verdict, Pending] = {
    "regression": "regression",
    "drift-skip": "drift-skipped",
    "drift-warn": "drift-warned",
    "drift-fail": "drift-failed",
    "new": "new",
}


@dataclass(frozen=True)
class Writes:
    """What a test writes once it is over."""

    #: Write this run's recording (``record``/``rerecord`` only, and only if it differs from the file).
    write_recording: bool
    #: Make the test's snapshot this run's: syrupy writes it under ``--snapshot-update`` (for a test
    #: that made no call, there is none: the stored one is left unused, and syrupy removes it).
    write_snapshot: bool
    #: The change this run leaves unwritten, for review; None when there is none to review.
    pending: Pending | None = None

    @property
    def keep_snapshot(self) -> bool:
        """Keep the stored snapshot: asserted back unchanged, syrupy neither reports nor deletes it."""
        return not self.write_snapshot


#: A test that failed or errored anywhere: nothing is written, nothing is left to review.
NOTHING = Writes(write_recording=False, write_snapshot=False)


def decide(
    *,
    mode: Mode,
    update: bool,
    verdict: Verdict,
    setup_failed: bool,
    body_failed: bool,
    teardown_failed: bool,
    recording_changed: bool,
    snapshot_identical: Callable[[], bool],
) -> Writes:
    """What the test writes, from its mode, ``--snapshot-update``, its verdict and each phase's outcome.

    ``recording_changed``: whether this run's recording differs from the file
    (new or re-recorded interactions, or unused ones to drop).
    ``snapshot_identical()``: whether the snapshot ``--snapshot-update`` would
    write is the one on disk; called only when the answer matters (a passing
    ``record``/``rerecord`` run with a changed recording and no
    ``--snapshot-update``), because it renders the snapshot.
    """
    if setup_failed or body_failed or teardown_failed:
        return NOTHING
    records = mode in ("record", "rerecord") and recording_changed
    if verdict == "draws-failed":
        # The gate failed: nothing is written, not even under --snapshot-update; what would change waits.
        changes = mode != "replay" and (records or not snapshot_identical())
        return Writes(write_recording=False, write_snapshot=False, pending="draws" if changes else None)
    if verdict == "unjudged":
        # Only the recording is at stake (no snapshot is made): the test passed.
        return Writes(write_recording=records, write_snapshot=False)
    if update:
        return Writes(write_recording=records, write_snapshot=True)
    # A replay run changes no file, so it leaves nothing to review.
    pending = _PENDING.get(verdict) if mode != "replay" else None
    if verdict == "new":
        # Nothing that exists changes: the new recording is kept, the snapshot waits for --snapshot-update.
        return Writes(write_recording=records, write_snapshot=False, pending=pending)
    if verdict == "no-calls":
        # No snapshot on disk, none to write: identical. The recording drops what the test no longer uses.
        return Writes(write_recording=records, write_snapshot=False)
    if verdict == "identical":
        return Writes(write_recording=records and snapshot_identical(), write_snapshot=False)
    # A regression, a drift, or a pass that leaves the snapshot different (a compare hook, a tolerance,
    # an unseeded call that varied): both stay as they are.
    return Writes(write_recording=False, write_snapshot=False, pending=pending)


def body_failed(call_outcome: str | None, verdict: Verdict) -> bool:
    """Whether the call phase failed for a reason other than the verdict's own judgement.

    ``call_outcome`` is the call phase report's outcome, None when the body
    never ran (``--setup-only``). A verdict that fails or skips the test does
    so in the call phase; any other failure or skip there (the body, a hook,
    a warning turned into an error) is the body's.
    """
    if call_outcome is None:
        return True
    return call_outcome != "passed" and verdict in PASSING_VERDICTS
