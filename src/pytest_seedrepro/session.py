"""Per-run state kept in ``config.stash``: the settings and the shared HTTP plumbing."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_seedrepro.options import Settings


@dataclass
class RunState:
    """What the plugin keeps for the whole run (one per process)."""

    settings: Settings
    #: One sync HTTP client for every test's ``seeded_llm.client``: building a
    #: client loads the CA store (~20 ms), too much to pay in every test.
    _sync_http_client: Any = None
    _ssl_context: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def sync_http_client(self) -> Any:
        """The shared ``httpx``/``httpx2`` client for sync OpenAI clients."""
        if self._sync_http_client is None:
            import openai

            self._sync_http_client = openai.DefaultHttpxClient()
        return self._sync_http_client

    def async_http_client(self) -> Any:
        """A fresh async HTTP client for one test.

        Async connections belong to the event loop that opened them, and each
        test may run on its own loop, so the client is per test and keeps no
        idle connections that could outlive that loop. The TLS context, the
        expensive part, is shared.
        """
        import openai

        http = _http_module(openai.DefaultAsyncHttpxClient)
        if self._ssl_context is None:
            self._ssl_context = http.create_ssl_context()
        return openai.DefaultAsyncHttpxClient(
            verify=self._ssl_context, limits=http.Limits(max_connections=100, max_keepalive_connections=0)
        )

    def close(self) -> None:
        """Release the shared client at the end of the run."""
        if self._sync_http_client is not None:
            self._sync_http_client.close()
            self._sync_http_client = None


def _http_module(client_class: type) -> Any:
    """``httpx`` for openai 1.x/2.x, ``httpx2`` for openai 3.x."""
    for base in client_class.__mro__:
        top = base.__module__.split(".")[0]
        if top in ("httpx", "httpx2"):
            return sys.modules[top]
    raise RuntimeError(f"cannot tell which httpx {client_class!r} is built on")


RUN_STATE = pytest.StashKey[RunState]()
