"""Replay side by side: the floor (a mocked SDK), the peer (pytest-recording + syrupy) and ours.

    pip install pytest-recording   # benchmark-only dependency, for the peer
    python benchmarks/bench_compare.py [--tests 500] [--runs 7] [--profile]

Three suites of N tests (``--tests``), each test making ONE chat completion and
checking it:

- **floor**: the openai SDK over an in-memory ``MockTransport`` (httpx's or
  httpx2's, whichever the installed openai is built on), plain asserts, one
  shared client per module;
- **peer**: the same calls written by hand on pytest-recording
  (``@pytest.mark.vcr``, matching on method, scheme, host, port, path, query
  and body) plus syrupy (``assert snapshot == text``), one shared client per
  module; recorded once against tests/llmserver.py, replayed with
  ``--record-mode=none``;
- **ours**: ``seeded_llm`` with ``seed`` and ``llm_params`` markers calling
  ``seeded_llm.complete``, replayed (the default mode) after one
  ``--seedrepro-mode=record --snapshot-update``.

Timed runs alternate round-robin after a warm-up round. Printed: min / median /
max wall time of each, and of the ratios ours/floor and ours/peer over the
rounds (each round's pair). ``--profile`` adds a cProfile of one ``ours`` run.
Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import pstats
import statistics
import sys
import tempfile
from pathlib import Path

sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    PYTHON,
    TESTS_DIR,
    clean_env,
    interleaved,
    run_pytest,
    use_pycache_prefix,
    write_ini,
)

MODULES = 10
ARGS = ["-q", "-p", "no:cacheprovider"]

FLOOR_CONFTEST = """
import openai

ANSWER = {
    "id": "x", "object": "chat.completion", "created": 1, "model": "m", "system_fingerprint": "fp",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def http_module():
    for base in openai.DefaultHttpxClient.__mro__:
        top = base.__module__.split(".")[0]
        if top in ("httpx", "httpx2"):
            return __import__(top)


def client():
    http = http_module()
    transport = http.MockTransport(lambda request: http.Response(200, json=ANSWER))
    return openai.OpenAI(api_key="x", http_client=http.Client(transport=transport))
"""

FLOOR_HEADER = """
import conftest

CLIENT = conftest.client()
"""

FLOOR_TEST = """
def test_{n}():
    reply = CLIENT.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{{"role": "user", "content": "question {n}"}}],
        seed={n},
        temperature=0.5,
    )
    assert reply.choices[0].message.content
"""

PEER_CONFTEST = """
import pytest

@pytest.fixture(scope="module")
def vcr_config():
    return {"match_on": ["method", "scheme", "host", "port", "path", "query", "body"],
            "filter_headers": ["authorization"]}
"""

PEER_HEADER = """
import openai, os, pytest

CLIENT = openai.OpenAI(base_url=os.environ["BENCH_BASE_URL"], api_key="x", max_retries=0)
"""

PEER_TEST = """
@pytest.mark.vcr
def test_{n}(snapshot):
    reply = CLIENT.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{{"role": "user", "content": "question {n}"}}],
        seed={n},
        temperature=0.5,
    )
    assert snapshot == reply.choices[0].message.content
"""

OURS_HEADER = """
import pytest
"""

OURS_TEST = """
@pytest.mark.seed({n})
@pytest.mark.llm_params(temperature=0.5)
def test_{n}(seeded_llm):
    assert seeded_llm.complete("question {n}")
"""


def write_suite(root: Path, header: str, test: str, tests: int, conftest: str = "") -> None:
    """``tests`` tests over ``MODULES`` modules, each module ``header`` then its tests."""
    root.mkdir(parents=True, exist_ok=True)
    if conftest:
        (root / "conftest.py").write_text(conftest)
    per_module = -(-tests // MODULES)
    for m in range(MODULES):
        numbers = range(m * per_module, min(tests, (m + 1) * per_module))
        (root / f"test_m{m}.py").write_text(header + "".join(test.format(n=n) for n in numbers))


def spread(values: list[float], unit: str = "s") -> str:
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"min {low:.3f}{unit}  median {middle:.3f}{unit}  max {high:.3f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()
    try:
        import pytest_recording  # noqa: F401
    except ImportError:
        raise SystemExit("the peer needs pytest-recording: pip install pytest-recording") from None

    with tempfile.TemporaryDirectory(prefix="seedrepro-compare-") as tmp:
        base = Path(tmp)
        use_pycache_prefix(base / "pycache")
        floor, peer, ours = base / "floor", base / "peer", base / "ours"
        write_suite(floor, FLOOR_HEADER, FLOOR_TEST, options.tests, FLOOR_CONFTEST)
        write_suite(peer, PEER_HEADER, PEER_TEST, options.tests, PEER_CONFTEST)
        write_suite(ours, OURS_HEADER, OURS_TEST, options.tests)
        write_ini(floor)

        sys.path.insert(0, str(TESTS_DIR))
        from llmserver import running_server

        with running_server() as server:
            write_ini(ours, server.base_url)
            write_ini(peer)
            run_pytest(
                ours,
                [*ARGS, "--seedrepro-mode=record", "--snapshot-update"],
                env=clean_env(OPENAI_API_KEY="x"),
                expect_passed=options.tests,
            )
            run_pytest(
                peer,
                [*ARGS, "--record-mode=once", "--snapshot-update", "-p", "no:seedrepro"],
                env=clean_env(BENCH_BASE_URL=server.base_url),
                expect_passed=options.tests,
            )
            base_url = server.base_url
        # The server is stopped: every timed run below replays or mocks.
        variants = {
            "floor": lambda: run_pytest(floor, [*ARGS, "-p", "no:seedrepro"], expect_passed=options.tests),
            "peer": lambda: run_pytest(
                peer,
                [*ARGS, "--record-mode=none", "-p", "no:seedrepro"],
                env=clean_env(BENCH_BASE_URL=base_url),
                expect_passed=options.tests,
            ),
            "ours": lambda: run_pytest(ours, ARGS, expect_passed=options.tests),
        }
        times = interleaved(variants, options.runs)
        print(f"{options.tests} tests, one chat completion each, {options.runs} alternating runs, {PYTHON}")
        for name, values in times.items():
            per_test = statistics.median(values) / options.tests * 1000
            print(f"  {name:5}  {spread(values)}  ({per_test:.2f} ms/test)")
        for other, goal in (("floor", 1.25), ("peer", 0.8)):
            ratios = [o / f for o, f in zip(times["ours"], times[other], strict=True)]
            print(f"  ours/{other:5} {spread(ratios, '')}   (goal <= {goal})")

        if options.profile:
            profile = base / "ours.prof"
            run_pytest(
                ours, ARGS, python_args=["-m", "cProfile", "-o", str(profile)], expect_passed=options.tests
            )
            stats = pstats.Stats(str(profile))
            stats.sort_stats("cumulative").print_stats(r"pytest_seedrepro|vcr/|syrupy|yaml", 25)


if __name__ == "__main__":
    main()
