"""pytest entry point (``pytest11`` name ``seedrepro``): options, markers, hooks, the fixture.

Only wiring lives here. Anything that imports openai, vcrpy or syrupy is
imported inside the fixture, so suites that never use it do not pay for it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_seedrepro import markers, options, report
from pytest_seedrepro.session import RUN_STATE, RunState

if TYPE_CHECKING:
    from pytest_seedrepro.fixture import SeededLLM


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_seedrepro import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    for line in markers.MARKER_LINES:
        config.addinivalue_line("markers", line)
    config.stash[RUN_STATE] = RunState(options.resolve(config))
    config.pluginmanager.register(report.RunSummary(config), "seedrepro-summary")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_STATE, None)
    if run is not None:
        run.close()
    # Only undo the SDK patches if a test installed them (and so imported openai).
    intercept = sys.modules.get("pytest_seedrepro.intercept")
    if intercept is not None:
        intercept.uninstall()


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[RUN_STATE].settings
    return (
        f"seedrepro: mode={settings.mode}, default seed={settings.default_seed}, "
        f"on fingerprint change={settings.on_fingerprint_change}"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    markers.validate_at_collection(metafunc.definition)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    verdict = sys.modules.get("pytest_seedrepro.verdict")
    if verdict is None:
        return (yield)
    try:
        result = yield
    except BaseException:
        # Keeps the test's snapshot in use; must never hide the test's own error.
        with contextlib.suppress(Exception):
            verdict.after_body(item, body_failed=True)
        raise
    # After the body, still in the call phase: a fail, skip or warning here is the test's own.
    verdict.after_body(item, body_failed=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # Only tests that used the fixture have imported the verdict machinery.
    verdict = sys.modules.get("pytest_seedrepro.verdict")
    if verdict is not None:
        verdict.judge(item, report)
    return report


@pytest.fixture
def seeded_llm(request: pytest.FixtureRequest) -> Iterator[SeededLLM]:
    """OpenAI clients whose requests are pinned to this test's seed and ``llm_params``.

    Also covers OpenAI clients built by the code under test while the test runs.
    """
    import pytest_seedrepro.verdict  # noqa: F401  (judges this test after its body, in makereport)
    from pytest_seedrepro.fixture import seeded_llm_for

    with seeded_llm_for(request) as llm:
        yield llm
