"""Hooks users implement to adapt the plugin (added in ``pytest_addhooks``).

Implement them in a ``conftest.py`` (or a plugin). Every hook here is called
through the test's ``item.ihook``, so a ``conftest.py`` affects only the tests
in its directory and below, and pluggy's ``tryfirst``, ``trylast`` and
``wrapper`` work as for any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_seedrepro.calls import Call

hookspec = pytest.hookspec


@hookspec
def pytest_seedrepro_request(body: dict[str, Any], item: pytest.Item) -> None:
    """Adjust the body of an outgoing API request in place.

    :param body: the JSON body about to be sent, after the seed and
        ``llm_params`` were pinned. Change it in place; what you leave is sent,
        recorded, matched and snapshotted.
    :param item: the test whose code made the call.

    Called once per API call (retries included once), for every endpoint,
    while a ``seeded_llm`` test runs. Every implementation runs; return values
    are ignored.
    """


@hookspec(firstresult=True)
def pytest_seedrepro_normalize(output: str, call: Call) -> str | None:
    """Return ``output`` normalised (dates, ids masked) before it is stored and compared.

    :param output: the call's output text, as the implementations before this
        one left it.
    :param call: the :class:`~pytest_seedrepro.Call` (request, fingerprint,
        model, ...); do not change it.

    Called for every call of a ``seeded_llm`` test after its body, before the
    snapshot is written or compared. Implementations form a chain: each one,
    in pluggy's order (``tryfirst`` first, then the nearest ``conftest.py``,
    ``trylast`` last), gets the previous one's result; return ``None`` to leave
    the text as it is. A ``wrapper=True`` implementation wraps each step and
    gets (and may replace) that step's result. A call of several choices
    (``n > 1``) runs the chain once per choice.
    """


@hookspec(firstresult=True)
def pytest_seedrepro_compare(expected: str, actual: str, call: Call) -> bool | None:
    """Return whether two outputs are equivalent, or ``None`` for exact comparison.

    :param expected: the normalised output stored in the snapshot.
    :param actual: this run's normalised output.
    :param call: this run's call.

    Called for each call whose request matches the snapshot's, when deciding
    the verdict (once per choice of an ``n > 1`` call). ``firstresult``: the
    first implementation that returns a bool decides, also under
    ``@pytest.mark.llm_tolerance`` (which measures only when this returns ``None``).
    """


@hookspec(firstresult=True)
def pytest_seedrepro_fingerprint_changed(
    item: pytest.Item, old: str | None, new: str | None, call: Call
) -> str | None:
    """Return the policy (``"skip"``, ``"warn"`` or ``"fail"``) for this change, or ``None``.

    :param item: the test.
    :param old: the backend identity stored in the snapshot.
    :param new: this run's backend identity.
    :param call: the call whose output changed with the fingerprint.

    Called when a call's output changed and its fingerprint (or backend
    identity) changed too. ``firstresult``; ``None`` leaves it to the
    ``on_fingerprint_change`` marker, the flag or the ini key.
    """


@hookspec(firstresult=True)
def pytest_seedrepro_fingerprint(call: Call) -> str | None:
    """Return the backend identity to store and compare instead of ``system_fingerprint``, or ``None``.

    :param call: the call, with its ``system_fingerprint`` and response ``model``.

    For servers whose fingerprint is constant or absent (Ollama, llama-cpp-python):
    return, say, the response's model or a server version. Called for every
    call when its snapshot entry is made. ``firstresult``.
    """


@hookspec(firstresult=True)
def pytest_seedrepro_similarity(a: str, b: str, call: Call) -> float | None:
    """Return how similar two answers of the same request are, from 0.0 to 1.0, or ``None``.

    :param a: one answer's output.
    :param b: another answer's output.
    :param call: the call (its first answer) they were sent for.

    Called with ``--seedrepro-repeat`` for every pair of a call's answers, to
    report their mean similarity, and under ``@pytest.mark.llm_tolerance`` for
    an output that differs from the snapshot's (the texts without their
    tool-call lines). ``firstresult``; ``None`` leaves it to ``difflib``'s
    ratio. Return, say, the cosine similarity of embeddings.
    """
