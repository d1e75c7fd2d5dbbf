"""Shared fixtures: the project's OpenAI-compatible test server and pytester set-up."""

from __future__ import annotations

import gc
import importlib
import pkgutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

# pytester's in-process runs restore sys.modules after each run, so anything a
# run imports is imported afresh by the next one: openai (~0.4 s) every time,
# and a new copy of the plugin's SDK patches beside stale ones. Worse, a
# package keeps its submodules as attributes, so `from pytest_seedrepro import
# writes` in a later run finds the old copy while `import
# pytest_seedrepro.files` makes a new one: two NotWritten classes. Importing
# every module here, before any run, makes every inner run share one copy.
import openai  # noqa: F401
import pytest

import pytest_seedrepro

for _module in pkgutil.iter_modules(pytest_seedrepro.__path__):
    importlib.import_module(f"pytest_seedrepro.{_module.name}")
# httpx imports its transport's httpcore lazily: first imported inside an inner
# run, it would vanish after it, and a later timeout or cut connection would no
# longer be translated into the SDK's error.
for _name in ("httpcore", "httpcore2"):
    try:
        importlib.import_module(_name)
    except ImportError:
        pass

# The fixture lives beside the server it drives; importing it here makes it
# available to every test module (tests/ is on sys.path: it has no __init__.py).
from llmserver import LLMServer, llm_server  # noqa: E402, F401

#: A key that must never reach a file: tests grep every written file for it.
SENTINEL_KEY = "sk-sentinel-a5b4c3d2e1f0-never-on-disk"


@pytest.fixture
def sentinel_key() -> str:
    """The API key the ``suite`` fixture sets, which no written file may contain."""
    return SENTINEL_KEY


@pytest.fixture
def make_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], pytest.Pytester]]:
    """Turn the pytester directory into a suite whose ini points seedrepro at ``base_url``, with a sentinel key."""

    def make(base_url: str) -> pytest.Pytester:
        monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
        # A developer's own settings must not leak into the runs under test.
        for name in ("SEEDREPRO_MODE", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            monkeypatch.delenv(name, raising=False)
        pytester.makeini(
            textwrap.dedent(
                f"""
                [pytest]
                seedrepro_base_url = {base_url}
                asyncio_default_fixture_loop_scope = function
                """
            )
        )
        return pytester

    yield make
    # The inner runs' garbage (their clients, connections, event loops) is
    # collected here, in the test that made it: a leak an inner run left
    # surfaces as an unraisable exception of this test, not of a later one.
    # One kind is let through: a ResourceWarning for a socket that an inner
    # suite's app client (never closed, as applications leave them) held to the
    # test server. Seen on Python 3.13 with openai 2.x after the 500-retry path,
    # from the garbage of an earlier inner run of the same process; the plugin's
    # own clients are closed and tested to be (tests/test_outside.py). Any other
    # unraisable exception still fails the test.
    hook = sys.unraisablehook

    def surface(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, ResourceWarning) and "unclosed <socket.socket" in str(value):
            return
        hook(unraisable)

    sys.unraisablehook = surface
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


@pytest.fixture
def suite(
    make_suite: Callable[[str], pytest.Pytester],
    llm_server: LLMServer,  # noqa: F811 - the fixture imported above
) -> pytest.Pytester:
    """A pytester suite pointed at the project's test server."""
    return make_suite(llm_server.base_url)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, with pytest-asyncio's loop-scope deprecation warning settled for inner runs."""
    # pytester clears PYTEST_ADDOPTS when it starts, so this must come after it.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
    # Under `pytest -n 2` this process is an xdist worker, and an in-process
    # inner run would inherit that: syrupy then leaves unused snapshots to a
    # controller that does not exist, and a deleted snapshot goes unnoticed.
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    return pytester
