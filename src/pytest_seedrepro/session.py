"""State kept by the plugin: per run in ``config.stash``, per test in ``item.stash``.

Both live here, in a module that imports neither openai nor vcrpy nor syrupy,
so the wiring in ``plugin.py`` can ask "did this test use ``seeded_llm``?"
without importing anything heavy, and the fixture, the verdict and the
end-of-test writes depend on this module rather than on each other.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_seedrepro.calls import Call
from pytest_seedrepro.markers import Pins
from pytest_seedrepro.options import Settings

if TYPE_CHECKING:
    from pytest_seedrepro.decision import Verdict


#: The ``workeroutput`` key under which a pytest-xdist worker hands its run problems to the controller.
RUN_PROBLEMS = "seedrepro_run_problems"


@dataclass
class RunState:
    """What the plugin keeps for the whole run, in ``config.stash[RUN_STATE]``.

    One per run, not per process: pytester runs many sessions in one process,
    and nothing of one may reach the next.
    """

    settings: Settings
    #: The TLS context every test's HTTP clients share: loading the CA store
    #: costs ~20 ms, too much to pay in every test. Clients themselves are per
    #: test, because a test may close the one it was given.
    _ssl_context: Any = None
    #: Set when a test patched the openai SDK (and so imported it): the patches
    #: are undone when the run ends.
    sdk_patched: bool = False
    #: ``complete()``'s clients, by API key, base URL, organisation and project:
    #: no test can reach (or close) them, so one serves every test, and a test
    #: that only calls ``complete()`` does not pay for building a client (~0.3 ms).
    _shared_clients: dict[tuple[str | None, ...], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: One line per API call a thread made after its ``seeded_llm`` test ended (refused, never sent).
    late_calls: list[str] = field(default_factory=list)
    #: One line per file that could not be written where no test could fail for it (syrupy
    #: writes snapshots at the end of the session): listed in the summary, and the run fails.
    unwritten: list[str] = field(default_factory=list)
    #: syrupy's snapshot directories by (which kind, test file, ``--snapshot-dirname``)
    #: (``snapshots.LLMCallsExtension.dirname``): a dozen path operations each, asked for again and again.
    snapshot_directories: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: The last snapshot location computed, as (syrupy's test location, index, location): syrupy
    #: asks for a test's location four times per assertion (``snapshots.LLMCallsExtension.get_location``).
    last_snapshot_location: tuple[Any, Any, str] | None = None

    def hand_over_problems(self, workeroutput: dict[str, Any]) -> None:
        """On a pytest-xdist worker: give the controller the lines only the controller reports.

        A worker prints no summary: the controller lists these lines and fails the run for them.
        """
        workeroutput[RUN_PROBLEMS] = {"unwritten": list(self.unwritten), "late_calls": list(self.late_calls)}

    def take_over_problems(self, workeroutput: Any) -> None:
        """On the pytest-xdist controller: add a finished worker's lines (:meth:`hand_over_problems`)."""
        problems = workeroutput.get(RUN_PROBLEMS) if isinstance(workeroutput, dict) else None
        if isinstance(problems, dict):
            self.unwritten.extend(str(line) for line in problems.get("unwritten", ()))
            self.late_calls.extend(str(line) for line in problems.get("late_calls", ()))

    def ssl_context(self, client_class: type) -> Any:
        """The shared TLS context for ``client_class``'s httpx flavour (httpx or httpx2)."""
        if self._ssl_context is None:
            if self.settings.mode == "replay":
                # Replay never opens a connection (the recording answers or the
                # call fails), so the CA store (~45 ms to load) is not needed.
                # Still a verifying context, without a trusted CA: any TLS
                # connection that did get through would fail, never go unchecked.
                import ssl  # here, not at the top: a suite that never uses seeded_llm skips it

                self._ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            else:
                self._ssl_context = http_module(client_class).create_ssl_context()
        return self._ssl_context

    def shared_client(self, api_key: str, base_url: str | None) -> Any:
        """The run's private ``openai.OpenAI`` for ``api_key`` and ``base_url``, built on first use.

        Also by the organisation and project the SDK would read from the
        environment, so a test that sets them gets a client that sends them.
        """
        key = (api_key, base_url, os.environ.get("OPENAI_ORG_ID"), os.environ.get("OPENAI_PROJECT_ID"))
        client = self._shared_clients.get(key)
        if client is None:
            with self._lock:  # a test may call complete() from several threads at once: build one
                client = self._shared_clients.get(key)
                if client is None:
                    import openai

                    http = openai.DefaultHttpxClient(verify=self.ssl_context(openai.DefaultHttpxClient))
                    client = openai.OpenAI(api_key=api_key, base_url=base_url, http_client=http)
                    self._shared_clients[key] = client
        return client

    def close_shared_clients(self) -> None:
        for client in self._shared_clients.values():
            client.close()
        self._shared_clients.clear()


def http_module(client_class: type) -> Any:
    """``httpx`` for openai 1.x/2.x, ``httpx2`` for openai 3.x: the module ``client_class`` is built on."""
    for base in client_class.__mro__:
        top = base.__module__.split(".")[0]
        if top in ("httpx", "httpx2"):
            return sys.modules[top]
    raise RuntimeError(f"cannot tell which httpx {client_class!r} is built on")


@dataclass
class TestState:
    """What the plugin knows about one ``seeded_llm`` test, kept in ``item.stash``."""

    __test__ = False  # not a test class, whatever pytest's collection thinks of the name

    pins: Pins
    calls: list[Call] = field(default_factory=list)
    #: One message per problem that fails the test even if the code under test
    #: swallowed the exception: a missing recording, an API error, a broken answer.
    problems: list[str] = field(default_factory=list)
    #: What the verdict found (``decision.Verdict``); ``writes.finish`` decides from it what is written.
    verdict: Verdict = "unjudged"
    #: Each phase's report outcome by ``when`` ("setup", "call"), recorded as the reports are made.
    outcomes: dict[str, str] = field(default_factory=dict)
    #: The cassette file of this test (None in ``live`` mode).
    cassette: Path | None = None
    #: The test's recording, saved at the very end if nothing failed (``recording.Recording``).
    recording: Any = None
    #: syrupy's ``SnapshotAssertion`` with seedrepro's extension (None without syrupy's plugin).
    snapshot: Any = None
    #: What the verdict wants asserted against the snapshot once the test is over:
    #: the rendered calls (written under ``--snapshot-update``) or the stored text.
    snapshot_value: Any = None
    #: This run's snapshot entries, kept to tell whether the snapshot would change only when that matters.
    snapshot_entries: list[dict[str, Any]] | None = None
    #: Calls whose fingerprint differs from the snapshot's (``verdict.FingerprintChange``).
    fingerprint_changes: list[Any] = field(default_factory=list)
    #: Calls whose response model alone changed (``judgement.FingerprintChange``).
    model_changes: list[Any] = field(default_factory=list)
    #: ids of the exceptions the plugin saw a call raise: when one ends the body,
    #: the report shows the plugin's one-line cause instead of a traceback.
    raised: set[int] = field(default_factory=set)
    #: The body ended on an error whose cause is in ``problems``: the report shows those lines.
    explain: bool = False
    #: The first divergence from the snapshot, as data (``report.divergence_view``), for the reports.
    divergence: dict[str, Any] | None = None
    #: Unseeded calls whose output varied under the same backend identity (their indexes).
    varied: list[int] = field(default_factory=list)
    #: Calls counted equal under ``llm_tolerance``, not exactly: ``{"call", "similarity", "threshold"}``.
    tolerated: list[dict[str, Any]] = field(default_factory=list)
    #: ``--seedrepro-repeat``: the figures of each repeated call (``repeat.RepeatFigures``).
    repeat_figures: list[Any] = field(default_factory=list)
    #: Parses the streams the code under test left unfinished (``intercept.ActiveTest.settle``).
    settle: Any = None
    #: No OPENAI_API_KEY when ``seeded_llm`` was set up in a mode that calls the API: checked at set-up's end.
    needs_api_key: bool = False
    #: Per-test HTTP clients to close when the test ends.
    closers: list[Any] = field(default_factory=list)
    #: ``@pytest.mark.draws``: the figures of the test's draws (``draws.DrawsRun.figures``), else None.
    draws_figures: dict[str, Any] | None = None


RUN_STATE = pytest.StashKey[RunState]()
TEST_STATE = pytest.StashKey[TestState]()
#: The draws of a ``@pytest.mark.draws`` test while they run (``draws.DrawsRun``).
DRAWS_RUN = pytest.StashKey[Any]()
