"""Report data: each test's (``annotate_report``), and the ``seedrepro`` summary of the whole run.

Each test's data travels on its call-phase report (``report.seedrepro``), which
pytest-xdist serialises from the workers to the controller with the rest of
the report, so the controller prints one summary for the whole run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_seedrepro.calls import is_responses
from pytest_seedrepro.files import NotWritten, write_atomically
from pytest_seedrepro.options import POLICIES, refresh_command, refresh_drifted_command, refresh_mode
from pytest_seedrepro.session import RUN_STATE, TEST_STATE, TestState

if TYPE_CHECKING:
    from pytest_seedrepro.judgement import Divergence


def _drop_sidecars_without_directory(output: dict[str, Any]) -> None:
    """Keep syrupy's controller from an INTERNALERROR over a snapshot whose directory is a file.

    Under xdist syrupy's workers list every snapshot they tried to write
    (``syrupy_write_sidecars``) and the controller unlinks their lock files,
    which raises NotADirectoryError when a file stands where the directory
    should be. Such a snapshot has no lock file to remove.
    """
    locations = output.get("syrupy_write_sidecars")
    if isinstance(locations, list):
        output["syrupy_write_sidecars"] = [p for p in locations if Path(str(p)).parent.is_dir()]


class RunSummary:
    """Totals over every ``seeded_llm`` test of the run; a plugin object registered at configure."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.tests = 0
        self.replayed = 0
        self.live = 0
        self.tokens = 0
        self.replayed_tokens = 0
        self.unpinned = 0
        self.no_seed = 0
        self.fingerprints: Counter[str] = Counter()
        #: (nodeid, outcome, old, new, old_model, new_model)
        self.changes: list[tuple[str, str, Any, Any, Any, Any]] = []
        self.disagreeing: list[tuple[str, list[str]]] = []
        #: Every seeded_llm test's data, for the HTML report.
        self.rows: list[tuple[str, dict[str, Any]]] = []
        #: ``--seedrepro-repeat`` figures: (nodeid, figures dict), one per repeated call.
        self.repeat: list[tuple[str, dict[str, Any]]] = []
        #: ``@pytest.mark.draws`` figures: (nodeid, figures dict), one per draws test.
        self.draws: list[tuple[str, dict[str, Any]]] = []
        #: The seeded_llm tests that ran (their call phase), for --seedrepro-only-drifted.
        self.ran: set[str] = set()
        #: Response models that changed under the same fingerprint and output: (nodeid, call, old, new).
        self.model_changes: list[tuple[str, int, str, str]] = []
        #: Calls answered with a recorded client error: (nodeid, call, status, message's first line).
        self.client_errors: list[tuple[str, int, int, str]] = []
        #: Unseeded calls whose output varied under the same backend: (nodeid, call).
        self.varied: list[tuple[str, int]] = []
        #: Calls counted equal under llm_tolerance, not exactly: (nodeid, call, similarity, threshold).
        self.tolerated: list[tuple[str, int, float, float]] = []
        #: A test whose fingerprint changed has a recording: the refresh commands re-record.
        self.changed_recorded = False
        #: The changes this run left pending, for ``seedrepro review``: node id -> kind.
        self.pending: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold a call-phase report in (on the controller under xdist, in-process otherwise)."""
        data = getattr(report, "seedrepro", None)
        if report.when == "call" and isinstance(data, dict):
            self.add(report.nodeid, data)
        kind = getattr(report, "seedrepro_pending", None)
        if report.when == "teardown" and isinstance(kind, str):  # writes.finish kept a pending change
            self.pending[report.nodeid] = kind

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Print the section once, where the user sees it (never on an xdist worker)."""
        if hasattr(self.config, "workerinput"):
            return
        # The run's problems (the workers' too, handed over under xdist: plugin.py): files
        # that could not be written, and calls refused to threads that outlived their test.
        run = self.config.stash[RUN_STATE]
        for line in run.unwritten:
            terminalreporter.write_line(f"seedrepro: {line}", red=True)
        for line in run.late_calls:
            terminalreporter.write_line(line, red=True)
        if not self.tests:
            return
        terminalreporter.write_sep("-", "seedrepro")
        for line in self.lines():
            terminalreporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write ``--seedrepro-report`` (once: on the controller under xdist), atomically.

        Runs after syrupy's own session finish (which is ``tryfirst`` and writes
        the snapshots), so a snapshot that could not be written fails the run here.
        """
        settings = self.config.stash[RUN_STATE].settings
        if not hasattr(self.config, "workerinput"):
            if settings.report_file is not None:
                self._write(settings.report_file, json.dumps(self.as_dict(), indent=2) + "\n", "the report")
            if settings.html_file is not None:
                from pytest_seedrepro import html_report

                page = html_report.render(
                    settings={
                        "mode": settings.mode,
                        "default_seed": settings.default_seed,
                        "on_fingerprint_change": settings.on_fingerprint_change,
                    },
                    totals={
                        "replayed": self.replayed,
                        "live": self.live,
                        "tokens": self.tokens,
                        "fingerprints": dict(self.fingerprints),
                    },
                    tests=self.rows,
                    repeat=self.repeat,
                    client_errors=self.client_errors,
                    draws=self.draws,
                    pending=set(self.pending),
                )
                self._write(settings.html_file, page, "the HTML report")
        if not hasattr(self.config, "workerinput"):
            from pytest_seedrepro import drift

            drifted = {t for t, outcome, *_ in self.changes if outcome in ("skipped", "warned", "failed")}
            drift.remember(self.config, ran=self.ran, drifted=drifted)
        output = getattr(self.config, "workeroutput", None)
        if output is not None:
            _drop_sidecars_without_directory(output)
        run = self.config.stash[RUN_STATE]
        if (run.unwritten or run.late_calls) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write(self, path: str, text: str, what: str) -> None:
        target = Path(path)
        if not target.is_absolute():
            target = self.config.invocation_params.dir / target
        try:
            write_atomically(target, text, what=what)
        except NotWritten as exc:
            self.config.stash[RUN_STATE].unwritten.append(str(exc))

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data (the ``--seedrepro-report`` file)."""
        return {
            "tests": self.tests,
            "calls": {
                "replayed": self.replayed,
                "live": self.live,
                "unpinned": self.unpinned,
                "responses_api_without_seed": self.no_seed,
            },
            "tokens": {"live": self.tokens, "replayed": self.replayed_tokens},
            "fingerprints": dict(sorted(self.fingerprints.items())),
            "fingerprint_changes": [
                {"test": t, "outcome": o, "old": old, "new": new, "old_model": om, "new_model": nm}
                for t, o, old, new, om, nm in self.changes
            ],
            "disagreeing_streams": [{"test": t, "fingerprints": fps} for t, fps in self.disagreeing],
            "model_changes": [
                {"test": t, "call": call, "old": old, "new": new} for t, call, old, new in self.model_changes
            ],
            "client_errors": [
                {"test": t, "call": call, "status": status, "message": message}
                for t, call, status, message in self.client_errors
            ],
            "varied": [{"test": t, "call": call} for t, call in self.varied],
            "within_tolerance": [
                {"test": t, "call": call, "similarity": similarity, "threshold": threshold}
                for t, call, similarity, threshold in self.tolerated
            ],
            **({"repeat": [{"test": t, **f} for t, f in self.repeat]} if self.repeat else {}),
            **({"draws": [{"test": t, **f} for t, f in self.draws]} if self.draws else {}),
        }

    def add(self, nodeid: str, data: dict[str, Any]) -> None:
        """Fold one test's data in."""
        self.tests += 1
        self.ran.add(nodeid)
        self.rows.append((nodeid, data))
        self.replayed += int(data.get("replayed", 0))
        self.live += int(data.get("live", 0))
        self.tokens += int(data.get("tokens", 0))
        self.replayed_tokens += int(data.get("replayed_tokens", 0))
        self.unpinned += int(data.get("unpinned", 0))
        self.no_seed += int(data.get("no_seed", 0))
        self.fingerprints.update(data.get("fingerprints", []))
        for change in data.get("changes", []):
            outcome = {"skip": "skipped", "warn": "warned", "fail": "failed"}.get(
                change["outcome"], change["outcome"]
            )
            entry = (
                nodeid,
                outcome,
                change["old"],
                change["new"],
                change.get("old_model"),
                change.get("new_model"),
            )
            if entry not in self.changes:  # one line per test, however many of its calls changed
                self.changes.append(entry)
            self.changed_recorded = self.changed_recorded or bool(data.get("has_recording"))
        for figures in data.get("repeat", []):
            self.repeat.append((nodeid, figures))
        if data.get("draws"):
            self.draws.append((nodeid, data["draws"]))
        for chunks in data.get("disagreeing_streams", []):
            self.disagreeing.append((nodeid, chunks))
        for change in data.get("model_changes", []):
            self.model_changes.append((nodeid, int(change["call"]), str(change["old"]), str(change["new"])))
        for error in data.get("client_errors", []):
            self.client_errors.append(
                (nodeid, int(error["call"]), int(error["status"]), str(error["message"]))
            )
        self.varied.extend((nodeid, int(call)) for call in data.get("varied", []))
        for passed in data.get("tolerance", []):
            self.tolerated.append(
                (nodeid, int(passed["call"]), float(passed["similarity"]), float(passed["threshold"]))
            )

    def lines(self) -> list[str]:
        """The section's text."""
        out = [
            f"{self.tests} test(s) with seeded_llm: {self.replayed} call(s) replayed, {self.live} live; "
            f"{self.tokens} token(s) used live ({self.replayed_tokens} replayed)"
        ]
        if self.unpinned:
            out.append(f"{self.unpinned} call(s) to endpoints without a seed (unpinned)")
        if self.no_seed:
            out.append(
                f"{self.no_seed} Responses API call(s): llm_params pinned, "
                "but no seed (the Responses API takes none)"
            )
        if self.fingerprints:
            seen = ", ".join(f"{fp} ({n})" for fp, n in sorted(self.fingerprints.items()))
            out.append(f"fingerprints seen (tests): {seen}")
        if self.changes:
            out.append("fingerprint changes:")
            for nodeid, outcome, old, new, old_model, new_model in self.changes:
                model = (
                    f"; model {old_model} -> {new_model}"
                    if old_model and new_model and old_model != new_model
                    else ""
                )
                out.append(f"  {outcome}: {nodeid}: {old} -> {new}{model}")
            mode = refresh_mode(self.config.stash[RUN_STATE].settings.mode, self.changed_recorded)
            out.append(f"refresh a test with: {refresh_command('NODEID', mode)}")
            drifted = {t for t, outcome, *_ in self.changes if outcome != "same output"}
            if len(drifted) > 1:
                out.append(f"refresh all {len(drifted)} drifted tests with: {refresh_drifted_command(mode)}")
        for nodeid, chunks in self.disagreeing:
            out.append(f"stream chunks disagreed on the fingerprint in {nodeid}: {' / '.join(chunks)}")
        for nodeid, call, old, new in self.model_changes:
            out.append(f"model changed: {nodeid} call {call}: {old} -> {new}")
        # A client error the app caught passes the test: listed, so it is not silent.
        for nodeid, call, status, message in self.client_errors:
            out.append(f"client error: {nodeid} call {call}: {status} {message}".rstrip())
        # Passes that are not exact: listed, so a sampled answer or a near miss is not silent.
        for nodeid, call in self.varied:
            out.append(f"varied (no seed): {nodeid} call {call}")
        for nodeid, call, similarity, threshold in self.tolerated:
            out.append(f"within tolerance: {nodeid} call {call}: {similarity:.2f} >= {threshold:.2f}")
        for nodeid, f in self.draws:
            out.append(f"draws: {nodeid}: {f['passed']}/{f['n']} passed (min_pass {f['min_pass']})")
        out.extend(self.repeat_table())
        if self.pending:
            out.append(f"{len(self.pending)} change(s) pending: seedrepro review")
        return out

    def repeat_table(self) -> list[str]:
        """The ``--seedrepro-repeat`` table: one row per repeated call."""
        if not self.repeat:
            return []
        several = len(self.repeat) != len({nodeid for nodeid, _ in self.repeat})
        rows = [("test", "seed", "identical", "distinct", "similarity", "fingerprints")]
        for nodeid, f in self.repeat:
            rows.append(
                (
                    f"{nodeid} call {f['call']}" if several else nodeid,
                    str(f["seed"]),
                    f"{f['identical']}/{f['n']}",
                    str(f["distinct"]),
                    f"{f['similarity']:.2f}",
                    ", ".join(f["fingerprints"]) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        serial = self.config.stash[RUN_STATE].settings.repeat_serial
        lines = [
            f"repeat: each call sent {self.repeat[0][1]['n']} times, "
            f"{'one at a time' if serial else 'together'}; identical = answers equal to the first"
        ]
        for row in rows:
            lines.append(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
        return lines


def annotate_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """Tidy the call-phase report: the plugin's one-line cause, the skip's location, the summary's data."""
    state = item.stash.get(TEST_STATE, None)
    if state is None or report.when != "call":
        return
    if report.failed and state.explain:
        # The body ended on an error the plugin caused or explained (a missing
        # recording, an API error): show the cause, not the SDK's traceback.
        report.longrepr = "\n".join(state.problems)
    elif report.failed and state.problems:
        _name_broken_calls(report, state.problems)
    point_skip_at_test(item, state, report)
    report.seedrepro = summary_of(state, report)  # type: ignore[attr-defined]


def point_skip_at_test(item: pytest.Item, state: TestState, report: pytest.TestReport) -> None:
    """A skip for a backend change shows the test's location, not verdict.py's, which raised it."""
    if report.skipped and state.verdict == "drift-skip" and isinstance(report.longrepr, tuple):
        _, line, _ = item.location
        report.longrepr = (str(item.path), (line or 0) + 1, report.longrepr[2])


def _name_broken_calls(report: pytest.TestReport, problems: list[str]) -> None:
    """Add the plugin's lines to a failure that does not show them yet.

    The body ended on an error of its own (the app caught the SDK's error, then
    tripped over the missing answer): its traceback stays, and the broken call
    is named beside it, in a section of the report, which pytest-xdist carries
    from the workers with the rest of the report.
    """
    shown = str(report.longrepr)
    missing = [line for line in problems if line not in shown]
    if not missing:
        return  # the verdict's own failure: its message is these lines
    text = "\n".join(missing)
    addsection = getattr(report.longrepr, "addsection", None)  # pytest's exception reprs have it
    if callable(addsection):
        addsection("seedrepro: the test's broken call(s)", text)
    else:
        report.longrepr = f"{shown}\n{text}"


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
        # A `live` run's refresh command is `rerecord` for a test that has a recording (options.refresh_mode).
        "has_recording": bool(state.fingerprint_changes)
        and state.recording is not None
        and state.recording.path.is_file(),
        "unpinned": sum(1 for c in state.calls if not c.pinned),
        "no_seed": sum(1 for c in state.calls if c.pinned and is_responses(c.endpoint)),
        "repeat": [f.as_dict() for f in state.repeat_figures],
        "varied": list(state.varied),
        "tolerance": list(state.tolerated),
        "draws": state.draws_figures,
        "seed": state.calls[0].seed if state.calls else state.pins.seed,
        "params": state.pins.params,
        "models": sorted({c.model for c in calls if c.model}),
        "verdict": _verdict_name(state, report),
        "divergence": state.divergence,
        "model_changes": [
            {"call": c.index, "old": c.old_model, "new": c.new_model} for c in state.model_changes
        ],
        # Recorded client errors (400, 404, 422): answers the app may have swallowed.
        "client_errors": [
            {"call": c.index, "status": c.status, "message": _first_line(c.output)}
            for c in state.calls
            if c.status is not None
        ],
    }


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _verdict_name(state: TestState, report: pytest.TestReport) -> str:
    """One word for the report: passed, failed, skipped, regression, drift-skipped/-warned/-failed."""
    drifted = [c.outcome for c in state.fingerprint_changes if c.outcome in POLICIES]
    if drifted:
        return {"skip": "drift-skipped", "warn": "drift-warned", "fail": "drift-failed"}[drifted[0]]
    if report.failed and state.divergence is not None and state.divergence["kind"] == "output":
        return "regression"
    return str(report.outcome)


def divergence_view(divergence: Divergence, consequences: list[str]) -> dict[str, Any]:
    """The first divergence as JSON-able data, for the HTML report (it travels on the report under xdist)."""
    from pytest_seedrepro.judgement import identity  # here: judgement's difflib is no start-up cost

    old, new = divergence.old or {}, divergence.new or {}
    return {
        "kind": divergence.kind,
        "call": divergence.change.index if divergence.change else divergence.position,
        "message": divergence.message.split("\n", 1)[0],
        "old_output": old.get("output"),
        "new_output": new.get("output"),
        "old_fingerprint": identity(old) if old else None,
        "new_fingerprint": identity(new) if new else None,
        "old_model": old.get("response_model"),
        "new_model": new.get("response_model"),
        "consequences": consequences,
    }
