"""The one place that touches the openai SDK's private internals.

The plugin must see every request of every OpenAI client in the process,
including clients the code under test builds itself, and keep issue order
under ``asyncio.gather``. The SDK offers no public hook that does all of that,
so it is patched at these private names, which have had the same shape from
openai 1.55.3 (httpx) to 3.x (httpx2):

- ``_base_client.SyncAPIClient.request`` and ``AsyncAPIClient.request``: pin
  the body before it is sent, number the call at issue time (before the async
  client's first ``await``, so ``asyncio.gather`` keeps its order), and see the
  exception of a failed call once the SDK's retries are over. Public
  replacement: wrapping ``OpenAI.__init__``/``AsyncOpenAI.__init__`` to pass an
  ``http_client`` with a custom transport; not taken because a transport sees a
  request only after the async client's first ``await`` (issue order lost
  under ``gather``) and sees each retry as a separate request.
- ``_base_client.*._process_response``: the final response of a call, whose
  stream of bytes is teed. Public replacement: the same transport wrapper,
  once it can tell which call a response belongs to.
- ``_compat.model_copy``: copy the request options before changing them.
  Public replacement: ``FinalRequestOptions.model_copy`` (pydantic 2 only).
- ``FinalRequestOptions`` fields ``json_data``, ``extra_json``, ``headers``,
  ``idempotency_key``, ``max_retries``, ``url``, ``method``: no public
  replacement.

:func:`load` checks those shapes once, when the first ``seeded_llm`` test
starts, and turns a mismatch into one line naming the supported range. It
checks the vcrpy internals ``recording.py`` uses too (``vcrpy_check``).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

SUPPORTED_RANGE = "openai >= 1.55.3, < 4"
_OPTION_FIELDS = ("json_data", "extra_json", "headers", "idempotency_key", "max_retries", "url", "method")


class UnsupportedSDK(Exception):
    """The installed openai SDK (or vcrpy: ``vcrpy_check``) lacks the internals the plugin uses."""


@dataclass(frozen=True)
class SDK:
    """The pieces of the openai SDK the plugin uses, checked."""

    sync_client: Any
    async_client: Any
    model_copy: Any
    version: str


_loaded: SDK | None = None


def load() -> SDK:
    """Import openai and check the internals the plugin patches; :class:`UnsupportedSDK` if they moved."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        version = importlib.metadata.version("openai")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        import openai
        from openai import _base_client
        from openai._compat import model_copy
        from openai._models import FinalRequestOptions

        sync_client, async_client = _base_client.SyncAPIClient, _base_client.AsyncAPIClient
        missing = [
            f"{cls.__name__}.{name}"
            for cls in (sync_client, async_client)
            for name in ("request", "_process_response")
            if name not in cls.__dict__
        ]
        # pydantic 2 names them model_fields, pydantic 1 __fields__ (the SDK supports both).
        fields: Any = getattr(FinalRequestOptions, "model_fields", None) or FinalRequestOptions.__fields__
        missing += [f"FinalRequestOptions.{name}" for name in _OPTION_FIELDS if name not in fields]
        missing += [
            f"openai.{name}"
            for name in ("DefaultHttpxClient", "DefaultAsyncHttpxClient")
            if not hasattr(openai, name)
        ]
    except ImportError as exc:
        missing = [f"{exc.name or exc}"]
    if missing:
        raise UnsupportedSDK(
            f"openai {version} is not supported by pytest-seedrepro (it needs {SUPPORTED_RANGE}; "
            f"missing: {', '.join(missing)}): install a supported one, e.g. pip install 'openai>=1.55.3,<4'"
        )
    from pytest_seedrepro import vcrpy_check

    vcrpy_check.check()  # recording.py's vcrpy internals: the same first use, the same one line
    _loaded = SDK(sync_client, async_client, model_copy, version)
    return _loaded
