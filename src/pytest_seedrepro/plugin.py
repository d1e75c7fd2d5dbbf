"""pytest entry point (``pytest11`` name ``seedrepro``): options, markers, hooks, the fixture.

Only wiring lives here. Anything that imports openai, vcrpy or syrupy is
imported inside the fixture, so suites that never use it do not pay for it;
the hooks below do nothing for a test without per-test state (``TEST_STATE``,
set by the fixture).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_seedrepro import options, report
from pytest_seedrepro.markers import MARKER_LINES, matrix_seeds
from pytest_seedrepro.session import DRAWS_RUN, RUN_STATE, TEST_STATE, RunState

if TYPE_CHECKING:
    from pytest_seedrepro.fixture import SeededLLM


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_seedrepro import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKER_LINES:
        config.addinivalue_line("markers", line)
    config.stash[RUN_STATE] = RunState(options.resolve(config))
    config.pluginmanager.register(report.RunSummary(config), "seedrepro-summary")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_STATE, None)
    if run is not None and run.sdk_patched:  # else openai was never imported: nothing to undo
        from pytest_seedrepro import intercept

        intercept.uninstall()
        run.close_shared_clients()


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[RUN_STATE].settings
    return [
        f"seedrepro: mode={settings.mode}, default seed={settings.default_seed}, "
        f"on fingerprint change={settings.on_fingerprint_change}",
        *([f"seedrepro: repeat: {options.repeat_line(settings)}"] if settings.repeat > 1 else []),
        *(f"seedrepro: {line}" for line in settings.ignored),
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # seed(1, 2, 3): one test per seed, ids [seed=1], ... The fixture reads its
    # seed from the parameter (indirect), so each gets its own files.
    if "seeded_llm" in metafunc.fixturenames:
        seeds = matrix_seeds(metafunc.definition)
        if seeds is not None:
            metafunc.parametrize("seeded_llm", seeds, indirect=True, ids=[f"seed={s}" for s in seeds])


_DRIFT_LINE = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_seeded_llm(item):
            from pytest_seedrepro import outside

            outside.seeded_llm_first(item)
    if config.stash[RUN_STATE].settings.repeat > 1:
        from pytest_seedrepro import draws

        draws.check_repeat([item for item in items if _uses_seeded_llm(item)])
    if config.stash[RUN_STATE].settings.only_drifted:
        from pytest_seedrepro import drift

        config.stash[_DRIFT_LINE] = drift.select(config, items)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    return config.stash.get(_DRIFT_LINE, None)


def _uses_seeded_llm(item: pytest.Item) -> bool:
    return "seeded_llm" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    # @pytest.mark.draws: the body runs n times, logged as one test (draws.run).
    if not _uses_seeded_llm(item) or item.get_closest_marker("draws") is None:
        return None
    from pytest_seedrepro import draws

    return draws.run(item, nextitem)


#: The item whose set-up is running, if it uses ``seeded_llm``: its higher-scoped fixtures are covered.
_SETTING_UP = pytest.StashKey[pytest.Item]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    if not _uses_seeded_llm(item):
        return (yield)
    item.config.stash[_SETTING_UP] = item
    try:
        result = yield
    finally:
        del item.config.stash[_SETTING_UP]
    state = item.stash.get(TEST_STATE, None)
    if state is not None and state.needs_api_key:
        from pytest_seedrepro.fixture import require_api_key

        require_api_key(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    item = request.config.stash.get(_SETTING_UP, None)
    if item is None or fixturedef.scope == "function":
        return (yield)
    from pytest_seedrepro import outside

    return (yield from outside.cover_fixture_setup(fixturedef, request, item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    state = item.stash.get(TEST_STATE, None)
    if state is None:
        return (yield)
    running = item.stash.get(DRAWS_RUN, None)
    if running is not None:
        from pytest_seedrepro import draws

        return (yield from draws.call_phase(item, state, running))
    from pytest_seedrepro import verdict

    try:
        result = yield
    except BaseException as exc:
        try:
            verdict.after_body(item, body_error=exc)
        except Exception:  # must never hide the test's own error
            pass
        raise
    # After the body, still in the call phase: a fail, skip or warning here is the test's own.
    verdict.after_body(item, body_error=None)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if DRAWS_RUN in item.stash:
        return report  # one draw's report, never logged: draws.run decides and writes once
    state = item.stash.get(TEST_STATE, None)
    if state is None:
        if report.when == "setup" and report.failed and _uses_seeded_llm(item):
            from pytest_seedrepro import writes

            writes.keep_snapshot_of_unstarted(item)
        return report
    state.outcomes[report.when] = report.outcome  # what writes.finish decides from
    if report.when == "call":
        from pytest_seedrepro.report import annotate_report

        annotate_report(item, report)
    elif report.when == "teardown":
        from pytest_seedrepro import writes

        writes.finish(item, report)
        # The test is over and its report carries what the summary needs: kept,
        # every test's calls, recording and closures would live until the session
        # ends, for the garbage collector to walk again and again.
        del item.stash[TEST_STATE]
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    # A draws test's outcome line shows its figures: "PASSED (4/5 draws)".
    if report.when != "call" or not isinstance(getattr(report, "seedrepro", None), dict):
        return None
    figures = report.seedrepro.get("draws")
    if not figures or getattr(report, "wasxfail", None) is not None:
        return None
    shown = f"({figures['passed']}/{figures['n']} draws)"
    letter = {"passed": ".", "failed": "F", "skipped": "s"}[report.outcome]
    # A plain word: pytest colours it by the outcome, and pytest < 8.3 prints a (word, markup)
    # pair as it is in the short test summary.
    return report.outcome, letter, f"{report.outcome.upper()} {shown}"


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    if _stopped_early(session) and getattr(session.config.option, "update_snapshots", False):
        # syrupy (which removes unused snapshots in this hook) counts a test that never
        # ran as one whose snapshot is unused: -x, --maxfail or Ctrl-C under
        # --snapshot-update would delete the snapshots of every test after the stop.
        session.config.option.no_cleanup = True  # what --snapshot-no-cleanup sets
    result = yield
    # After syrupy wrote the snapshots and the summary's own session finish:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: the run's problems go to the controller
        session.config.stash[RUN_STATE].hand_over_problems(workeroutput)
    return result


def _stopped_early(session: pytest.Session) -> bool:
    """The run ended before every selected test ran (``-x``, ``--maxfail``, an interrupt)."""
    return bool(session.shouldfail or session.shouldstop) or session.exitstatus == pytest.ExitCode.INTERRUPTED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:  # pytest-xdist's, on the controller
    node.config.stash[RUN_STATE].take_over_problems(getattr(node, "workeroutput", None))


@pytest.fixture
def seeded_llm(request: pytest.FixtureRequest) -> Iterator[SeededLLM]:
    """OpenAI clients whose requests are pinned to this test's seed and ``llm_params``.

    Also covers OpenAI clients built by the code under test while the test runs.
    """
    from pytest_seedrepro.fixture import seeded_llm_for

    with seeded_llm_for(request) as llm:
        yield llm
