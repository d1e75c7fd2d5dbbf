"""Calls a ``seeded_llm`` test makes outside its body: from its fixtures, and from threads it left running.

- A function-scoped fixture of the test is part of the test: ``seeded_llm`` is
  set up before the test's other function-scoped fixtures, so their calls are
  pinned, recorded in the test's recording and snapshotted with its own.
- A fixture of a higher scope (class, module, package, session) outlives the
  test that set it up first, so its set-up calls get a recording of their own
  (:func:`fixture_cassette_path`), pinned by the markers of the fixture's node
  and replayed whichever test sets it up (``-k``, xdist). Its tear-down is not
  covered, nor are fixtures set up for tests that do not use ``seeded_llm``.
- A thread the test left running that calls once the test is over is refused
  (``intercept.watch_threads_left``); the run lists it and fails.

This module imports nothing heavy at import time; what records imports
openai and vcrpy, and runs only for tests that use ``seeded_llm``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import pytest

from pytest_seedrepro import markers
from pytest_seedrepro.calls import Call, is_pinnable, is_recorded_error, is_responses
from pytest_seedrepro.pinning import pin_body, pin_responses_body
from pytest_seedrepro.session import RUN_STATE, RunState


def seeded_llm_first(item: pytest.Item) -> None:
    """Set ``seeded_llm`` up before the item's other function-scoped fixtures.

    pytest sets up an item's fixtures in the order of its fixture closure
    (``item.fixturenames``: higher scopes first, then the signature's order), so
    a function fixture named before ``seeded_llm`` would call the API unpinned
    and unrecorded. ``seeded_llm`` moves to the first function-scoped place;
    what it depends on is still set up before it, by pytest. Tear-down runs in
    reverse, so the other fixtures' tear-down calls are the test's too.
    """
    info = getattr(item, "_fixtureinfo", None)  # pytest.Function's; no public way to reorder set-up
    names = getattr(info, "names_closure", None)
    definitions = getattr(info, "name2fixturedefs", None)
    if not isinstance(names, list) or not isinstance(definitions, dict) or "seeded_llm" not in names:
        return

    def scope(name: str) -> str:
        found = definitions.get(name)
        return str(getattr(found[-1], "scope", "function")) if found else "function"

    names.remove("seeded_llm")
    first = next((i for i, name in enumerate(names) if scope(name) == "function"), len(names))
    names.insert(first, "seeded_llm")


def fixture_cassette_path(fixturedef: Any, request: pytest.FixtureRequest, cassette_dir: str) -> Path:
    """Where a higher-scoped fixture's recording lives.

    ``<dir of the file defining the fixture>/<cassette dir>/<that file's stem>/fixture-<name>[<param>].yaml``,
    with ``.<node>`` before ``.yaml`` when the fixture's instance belongs to a
    node of another file (a module-scoped fixture of a conftest.py serves each
    module on its own: each module gets its own recording) or to a class.
    """
    # Unwrapped: pytest-asyncio wraps async fixtures in functions of its own module.
    defined_in = Path(inspect.getsourcefile(inspect.unwrap(fixturedef.func)) or str(request.path)).resolve()
    name = f"fixture-{fixturedef.argname}"
    if hasattr(request, "param"):
        name += f"[{_param_id(fixturedef, request)}]"
    node = request.node
    if fixturedef.scope != "session" and node is not None:
        node_path = getattr(node, "path", None)
        nested = node.nodeid.split("::")[1:]
        if node_path is not None and Path(node_path).resolve() == defined_in:
            if nested:
                name += "." + ".".join(nested)
        else:
            name += "." + node.nodeid
    safe = re.sub(r"[^\w.\[\]=,+-]+", "_", name)
    return defined_in.parent / cassette_dir / defined_in.stem / f"{safe}.yaml"


def _param_id(fixturedef: Any, request: pytest.FixtureRequest) -> str:
    index = getattr(request, "param_index", 0)
    ids = fixturedef.ids
    if isinstance(ids, list | tuple) and index < len(ids) and ids[index] is not None:
        return str(ids[index])
    param = request.param
    return str(param) if isinstance(param, str | int | float | bool) or param is None else str(index)


def cover_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest, item: pytest.Item
) -> Generator[None, Any, Any]:
    """A ``pytest_fixture_setup`` wrapper's body for a higher-scoped fixture of a ``seeded_llm`` test.

    Pins, records or replays the fixture's set-up calls in its own recording;
    fails the set-up in one line for a call without a recording or an API
    error, even one the fixture swallowed. Its recording is written only when
    the set-up succeeded.
    """
    if not _defined_in_project(fixturedef, item.config):
        return (yield)  # a plugin's fixture (pytest's, pytest-asyncio's...): its recording has no place
    from pytest_seedrepro import sdk

    try:
        sdk.load()
    except sdk.UnsupportedSDK:
        return (yield)  # the test's own set-up says so, in its words
    import pytest_seedrepro.intercept as intercept

    if intercept.is_active():
        # Asked for inside a running test (request.getfixturevalue): its calls are that test's.
        return (yield)
    run = item.config.stash[RUN_STATE]
    setup = _FixtureSetup(fixturedef, request, item, run)
    try:
        setup.pins = markers.resolve(request.node) if request.node is not None else markers.Pins()
    except markers.MarkerError:
        return (yield)  # the test's own set-up reports the marker, in its words
    started = setup.start()
    if started:
        _fail(fixturedef, started)
    problem: str | None
    try:
        with setup.stack:
            try:
                result = yield
            finally:
                setup.settle()
    except BaseException:
        problem = setup.problem()
        if problem is None:
            raise
    else:
        problem = setup.problem() or setup.write()
        if not problem:
            return result
    _fail(fixturedef, problem)


def _defined_in_project(fixturedef: Any, config: pytest.Config) -> bool:
    try:
        source = inspect.getsourcefile(inspect.unwrap(fixturedef.func))
    except TypeError:  # a builtin or a C function: not the project's
        return False
    return source is not None and Path(source).resolve().is_relative_to(config.rootpath.resolve())


def _fail(fixturedef: Any, message: str | None) -> NoReturn:
    """Fail the set-up in one line, and make every later test that asks for the fixture see the same."""
    try:
        pytest.fail(message or "", pytrace=False)
    except pytest.fail.Exception as failure:
        cached = getattr(fixturedef, "cached_result", None)
        if isinstance(cached, tuple) and len(cached) == 3:
            # pytest keeps the set-up's outcome for the fixture's scope: (value, key, error or None).
            # The error is (exception, traceback) from pytest 8.3 on, the exception alone before.
            modern = tuple(pytest.version_tuple[:2]) >= (8, 3)
            fixturedef.cached_result = (
                None,
                cached[1],
                (failure, failure.__traceback__) if modern else failure,
            )
        raise


class _FixtureSetup:
    """One higher-scoped fixture being set up: its calls, pins and recording."""

    def __init__(self, fixturedef: Any, request: pytest.FixtureRequest, item: pytest.Item, run: RunState):
        self.fixturedef = fixturedef
        self.request = request
        self.item = item
        self.run = run
        self.calls: list[Call] = []
        self.recording: Any = None
        self.stack = ExitStack()
        self.pins = markers.Pins()
        self._settle: Any = None
        self.who = f"seedrepro: fixture {fixturedef.argname!r} (set up for {item.nodeid})"

    def start(self) -> str:
        """Route the SDK's traffic to this fixture; a problem line if it cannot be."""
        import pytest_seedrepro.intercept as intercept

        settings = self.run.settings
        env = self.stack.enter_context(pytest.MonkeyPatch.context())
        # Clients the fixture builds read these, as the test's do (see fixture._TestSetup.set_environment).
        from pytest_seedrepro.fixture import BASE_URL_VARIABLES, PLACEHOLDER_API_KEY

        if settings.mode == "replay" and not _has_key():
            env.setenv("OPENAI_API_KEY", PLACEHOLDER_API_KEY)
        if settings.base_url:
            for name in BASE_URL_VARIABLES:
                env.setenv(name, settings.base_url)
        if settings.mode != "live":
            import pytest_seedrepro.recording as recording

            path = fixture_cassette_path(self.fixturedef, self.request, settings.cassette_dir)
            self.recording = recording.Recording(
                path, self.calls, ignore_existing=settings.mode == "rerecord"
            )
            try:
                cassette = self.stack.enter_context(recording.open_cassette(self.recording, settings.mode))
            except recording.CorruptRecording as exc:
                self.stack.close()
                return (
                    f"{self.who}: {exc}. Fix or delete the file, then record it again with: "
                    f"pytest --seedrepro-mode=rerecord '{self.item.nodeid}'"
                )
            recording.watch_replays(cassette, intercept.note_replayed)
        intercept.install()
        self.run.sdk_patched = True
        active = intercept.ActiveTest(
            self.calls, self._prepare_body, self._on_error, retries=settings.mode != "replay"
        )
        self._settle = active.settle
        intercept.activate(active)
        self.stack.callback(intercept.activate, None)
        return ""

    def settle(self) -> None:
        if self._settle is not None:
            self._settle()

    def _prepare_body(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        pinnable = is_pinnable(path) or is_responses(path)
        if is_responses(path):
            body, _ = pin_responses_body(body, params=self.pins.params)
        elif pinnable:
            body, _ = pin_body(
                body,
                marker_seed=self.pins.seed,
                no_seed=self.pins.no_seed,
                default_seed=self.run.settings.default_seed,
                params=self.pins.params,
            )
        # The test being set up, as the hook's item: a conftest.py's hooks apply to the tests below it.
        self.item.ihook.pytest_seedrepro_request(body=body, item=self.item)
        return body, pinnable

    def _on_error(self, call: Call, exc: BaseException) -> BaseException | None:
        from pytest_seedrepro.fixture import _describe_error, _error_message

        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and is_recorded_error(status) and call.error is None:
            call.status = status  # a deterministic answer to a bad request: recorded, replayed
            call.output = _error_message(exc)
            return None
        if self.recording is not None:
            import pytest_seedrepro.recording as recording

            refusal = recording.missing_recording_error(exc)
            if refusal is not None:
                call.error = recording.describe_missing(call, self.recording.path, refusal, self.item.nodeid)
                replacement = recording.MissingRecording(f"{self.who}: call {call.index}: {call.error}")
                return replacement
        call.error = call.error or _describe_error(exc)
        return None

    def problem(self) -> str | None:
        """The line that fails the set-up: the first call without a usable answer, if any.

        Also when the fixture caught the SDK's error and went on, or failed
        on its own because of it: the call is what the user must fix.
        """
        broken = [call for call in self.calls if call.error]
        if not broken:
            return None
        call = broken[0]
        return f"{self.who}: call {call.index}: {call.error}"

    def write(self) -> str:
        """Write the fixture's recording (atomically); a problem line if it could not be."""
        if self.recording is None:
            return ""
        from pytest_seedrepro.files import NotWritten

        try:
            self.recording.write()
        except NotWritten as exc:
            return f"{self.who}: {exc}"
        return ""


def _has_key() -> bool:
    import os

    return bool(os.environ.get("OPENAI_API_KEY"))
