"""Hooks users implement in a ``conftest.py`` to adapt the plugin (added in ``pytest_addhooks``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_seedrepro.calls import Call

hookspec = pytest.hookspec


@hookspec
def pytest_seedrepro_request(request: dict[str, Any], item: pytest.Item) -> None:
    """Adjust the outgoing request body in place, after the seed and ``llm_params`` were pinned."""


@hookspec
def pytest_seedrepro_normalize(output: str, call: Call) -> str | None:
    """Return ``output`` normalised (dates, ids masked) before it is stored and compared, or ``None``.

    Every implementation runs, each on the previous one's result.
    """


@hookspec(firstresult=True)
def pytest_seedrepro_compare(expected: str, actual: str, call: Call) -> bool | None:
    """Return whether two outputs are equivalent, or ``None`` to leave it to exact comparison."""


@hookspec(firstresult=True)
def pytest_seedrepro_fingerprint_changed(
    item: pytest.Item, old: str | None, new: str | None, call: Call
) -> str | None:
    """Return the policy ('skip', 'warn' or 'fail') for this change, or ``None`` for the configured one."""


@hookspec(firstresult=True)
def pytest_seedrepro_fingerprint(call: Call) -> str | None:
    """Return the backend identity to store and compare instead of ``system_fingerprint``, or ``None``."""
