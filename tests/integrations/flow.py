"""The flow every library goes through: record, pinned, replay offline, a backend change skips."""

from __future__ import annotations

import importlib
import os

import pytest

from llmserver import LLMServer
from written import files_of

#: module -> (what to import, what to pip install)
LIBRARIES = {
    "langchain": ("langchain_openai", "langchain-openai"),
    "instructor": ("instructor", "instructor"),
    "pydantic_ai": ("pydantic_ai", "pydantic-ai-slim[openai]"),
    "llama_index": ("llama_index.llms.openai", "llama-index-llms-openai"),
    "openai_agents": ("agents", "openai-agents"),
}


def require(name: str) -> None:
    """Skip the calling module without its library (fail where CI installed it on purpose)."""
    module, requirement = LIBRARIES[name]
    try:
        importlib.import_module(module)
    except ImportError:
        required = os.environ.get("SEEDREPRO_INTEGRATIONS", "").split(",")
        message = f"{module} is not installed: pip install '{requirement}'"
        if name in required:
            pytest.fail(message + " (SEEDREPRO_INTEGRATIONS requires it)", pytrace=False)
        pytest.skip(message, allow_module_level=True)


#: What the integration suites pin: the server must see these on every chat request.
SEED = 4242
TEMPERATURE = 0.3


def run_flow(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch, tests: int
) -> None:
    """Record, check the pins, replay offline with no key, then a backend change skips every test."""
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=tests)
    chats = [r.body for r in llm_server.requests if r.path.endswith("/chat/completions")]
    assert chats, "the library sent no chat completion"
    assert {b.get("seed") for b in chats} == {SEED}, [b.get("seed") for b in chats]
    assert {b.get("temperature") for b in chats} == {TEMPERATURE}
    recorded = files_of(suite.path)
    assert recorded

    port = llm_server.port
    llm_server.stop()
    with monkeypatch.context() as offline:
        offline.delenv("OPENAI_API_KEY", raising=False)
        suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=tests)
    assert files_of(suite.path) == recorded

    llm_server.start(port=port)
    llm_server.fingerprint, llm_server.variant = "fp_new_backend", "the backend changed"
    result = suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=tests)
    result.stdout.fnmatch_lines(["*the backend changed and the output with it*fp_test_1 -> fp_new_backend*"])
    assert files_of(suite.path) == recorded
