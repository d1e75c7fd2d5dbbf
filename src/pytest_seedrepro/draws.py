"""``@pytest.mark.draws(n, min_pass=1.0)``: one test whose body runs n times, judged on all of them.

A model that takes no seed (the Responses API, reasoning models) answers the
same request differently each time: one answer proves little. A draws test
runs its body n times (draws, numbered from 0, ``seeded_llm.draw``), each with
fresh function-scoped fixtures, and passes when at least ``ceil(min_pass * n)``
of them passed. It stays one test: one recording and one snapshot hold every
draw in order, and exactly one set-up/call/tear-down report triple is logged,
so pytest-xdist and junitxml count one test. The per-draw outcomes go in a
section of the call report.

The test-wide state (its calls, its cassette, its snapshot) is opened by the
first draw's ``seeded_llm`` and spans every draw; the verdict runs once, in
the last draw's call phase, after its body; what is written is decided once,
after the last draw's tear-down.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from pytest_seedrepro import markers
from pytest_seedrepro.session import DRAWS_RUN, TEST_STATE, TestState

#: The outcome of a draw whose set-up failed (its body never ran).
ERROR = "error"


@dataclass
class DrawsRun:
    """The draws of one test while they run, kept in ``item.stash[DRAWS_RUN]``."""

    n: int
    min_pass: Fraction
    #: ``min_pass`` as the marker spelled it, for messages.
    min_pass_text: str
    #: The running draw, from 0.
    draw: int = 0
    #: Whether the running draw is the last.
    last: bool = False
    #: Each finished draw's outcome: ``passed``, ``failed``, ``skipped`` or ``error`` (set-up failed).
    outcomes: list[str] = field(default_factory=list)
    #: The first draw that did not pass and its error, as the report shows it.
    first_failure: tuple[int, str] | None = None
    #: The first skip of a draw, raised again when every draw skipped.
    first_skip: BaseException | None = None
    #: The test-wide context (cassette, environment, interception), opened by the first draw's fixture.
    stack: ExitStack | None = None
    #: Builds each draw's ``SeededLLM`` (set by the first draw's fixture).
    new_llm: Any = None

    @property
    def passed(self) -> int:
        """How many draws passed their body."""
        return self.outcomes.count("passed")

    @property
    def required(self) -> int:
        """How many draws must pass: ``ceil(min_pass * n)``, exactly."""
        return markers.required_draws(self.n, self.min_pass)

    def close(self) -> None:
        """Close the test-wide context (idempotent): the cassette keeps what the draws used."""
        stack, self.stack = self.stack, None
        if stack is not None:
            stack.close()

    def figures(self) -> dict[str, Any]:
        """The JSON-able figures of the draws, for the summary and the reports."""
        return {
            "n": self.n,
            "passed": self.passed,
            "min_pass": float(self.min_pass),
            "outcomes": list(self.outcomes),
        }

    def gate_line(self, nodeid: str) -> str:
        """``seedrepro: NODEID: k/n draws passed (min_pass m)``."""
        return f"seedrepro: {nodeid}: {self.passed}/{self.n} draws passed (min_pass {self.min_pass_text})"


def draw_seed(seed: int, n: int, draw: int) -> int:
    """The seed of draw ``draw`` of ``n``: ``seed * n + draw``.

    Distinct for every draw of a test, and across a seed matrix (``seed(1, 2, 3)``
    with the same ``n``): ``(seed, draw) -> seed * n + draw`` is one-to-one for ``draw < n``.
    """
    return seed * n + draw


def is_draws_test(item: pytest.Item) -> bool:
    """Whether ``item`` has a ``draws`` marker (checked by the fixture and ``run``)."""
    return item.get_closest_marker("draws") is not None


def check_repeat(items: list[pytest.Item]) -> None:
    """``--seedrepro-repeat`` sends each call N times to measure it: a draws test is another experiment."""
    drawn = [item.nodeid for item in items if is_draws_test(item)]
    if drawn:
        raise pytest.UsageError(
            f"seedrepro: --seedrepro-repeat cannot run @pytest.mark.draws tests ({drawn[0]}"
            f"{f' and {len(drawn) - 1} more' if len(drawn) > 1 else ''}); deselect them "
            "(-m 'not draws') or drop --seedrepro-repeat"
        )


def run(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run the draws of ``item`` and log one report triple; None to leave a bad marker to the fixture."""
    mark = item.get_closest_marker("draws")
    assert mark is not None
    try:
        n, min_pass, text = markers.draws_of(mark)
    except markers.MarkerError:
        return None  # the usual protocol: seeded_llm fails the set-up in one line
    running = DrawsRun(n, min_pass, text)
    item.stash[DRAWS_RUN] = running
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    setups: list[pytest.TestReport] = []
    calls: list[pytest.TestReport] = []
    teardowns: list[pytest.TestReport] = []
    try:
        for draw in range(n):
            running.draw, running.last = draw, draw == n - 1
            # Between draws only the test's own (function-scoped) fixtures are torn
            # down: the stack is unwound to the test's parent, which the next draw shares.
            after = nextitem if running.last else item.parent
            reports = runtestprotocol(item, log=False, nextitem=after)  # type: ignore[arg-type]
            for report in reports:
                {"setup": setups, "call": calls, "teardown": teardowns}[report.when].append(report)
            if len(running.outcomes) <= draw:  # the body never ran: its set-up failed
                running.outcomes.append(ERROR)
                if running.first_failure is None and reports[0].failed:
                    running.first_failure = (draw, str(reports[0].longrepr))
    finally:
        running.close()
        del item.stash[DRAWS_RUN]
    setup = next((r for r in setups if not r.passed), setups[-1])
    teardown = next((r for r in teardowns if r.failed), teardowns[-1])
    call = calls[-1] if setup.passed and calls else None
    _finish(item, running, setup, call, teardown)
    for logged in (setup, call, teardown):
        if logged is not None:
            ihook.pytest_runtest_logreport(report=logged)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def _finish(
    item: pytest.Item,
    running: DrawsRun,
    setup: pytest.TestReport,
    call: pytest.TestReport | None,
    teardown: pytest.TestReport,
) -> None:
    """Annotate the reports that are logged and write what the whole test decided."""
    state = item.stash.get(TEST_STATE, None)
    if call is not None:
        call.sections.append(("seedrepro draws", _outcomes_text(running)))
    if state is None:  # no draw got as far as seeded_llm's state
        if setup.failed:
            from pytest_seedrepro import writes

            writes.keep_snapshot_of_unstarted(item)
        return
    from pytest_seedrepro import report, writes

    state.draws_figures = running.figures()
    state.outcomes = {"setup": setup.outcome, "teardown": teardown.outcome}
    if call is not None:
        state.outcomes["call"] = call.outcome
        report.point_skip_at_test(item, state, call)
        call.seedrepro = report.summary_of(state, call)  # type: ignore[attr-defined]
    writes.finish(item, teardown)
    del item.stash[TEST_STATE]


def _outcomes_text(running: DrawsRun) -> str:
    lines = [f"draw {draw}: {outcome}" for draw, outcome in enumerate(running.outcomes)]
    figures = f"{running.passed}/{running.n} draws passed; {running.required} needed"
    lines.append(f"{figures} (min_pass {running.min_pass_text})")
    return "\n".join(lines)


def call_phase(item: pytest.Item, state: TestState, running: DrawsRun) -> Generator[None, None, None]:
    """The ``pytest_runtest_call`` wrapper of one draw: its outcome is noted, the last one judges the test.

    A draw's failure or skip does not end the call phase: it is one draw's
    outcome. After the last draw's body, the gate and the verdict decide the
    test, in its call phase, as for any test (a fail, a skip, a warning).
    """
    from pytest_seedrepro import verdict

    error: BaseException | None = None
    try:
        yield
    except pytest.exit.Exception:
        raise
    except (Exception, pytest.fail.Exception, pytest.skip.Exception, pytest.xfail.Exception) as exc:
        error = exc
    draw = running.draw
    if state.settle is not None:
        state.settle()
    for call in state.calls:
        if call.draw is None:
            call.draw = draw
    problems = verdict.problem_lines(item.nodeid, [c for c in state.calls if c.draw == draw])
    if error is None and not problems:
        running.outcomes.append("passed")
    elif isinstance(error, pytest.skip.Exception):
        running.outcomes.append("skipped")
        running.first_skip = running.first_skip or error
    else:
        running.outcomes.append("failed")
        if running.first_failure is None:
            running.first_failure = (draw, _failure_text(item, state, error, problems))
    if running.last:
        _judge(item, state, running)


def _failure_text(
    item: pytest.Item, state: TestState, error: BaseException | None, problems: list[str]
) -> str:
    """A draw's error as the report would show it (the plugin's lines for a call it explained)."""
    if error is None or (id(error) in state.raised and problems):
        return "\n".join(problems)
    return str(item.repr_failure(pytest.ExceptionInfo.from_exception(error)))


def _judge(item: pytest.Item, state: TestState, running: DrawsRun) -> None:
    """After the last draw: the gate, then the verdict of the whole test, as for any test."""
    from pytest_seedrepro import verdict

    state.draws_figures = running.figures()
    if running.first_skip is not None and running.outcomes.count("skipped") == running.n:
        raise running.first_skip  # every draw skipped: so is the test
    if running.passed >= running.required:
        verdict.judge(item, state)
        return
    message = running.gate_line(item.nodeid)
    if running.first_failure is not None:
        draw, text = running.first_failure
        message += f"\nthe first failing draw ({draw}):\n{text}"
    # Below the gate: a changed backend identity gets the fingerprint policy; anything else fails.
    try:
        verdict.judge(item, state)
    except pytest.fail.Exception:
        if state.verdict == "drift-fail":
            raise
    if state.verdict in ("drift-skip", "drift-warn", "drift-fail"):
        return
    state.verdict = "draws-failed"
    pytest.fail(message, pytrace=False)
