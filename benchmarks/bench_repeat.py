"""What ``--seedrepro-repeat=5`` costs next to one send of each call, against a server that takes 0.4 s.

    python benchmarks/bench_repeat.py [--runs 3] [--tests 3] [--latency 0.4] [--repeat 5]

Starts the project's test server (tests/llmserver.py) with its ``latency`` knob
set (every answer takes ``--latency`` seconds; a stream spreads them over its
events) and, for each kind of call (sync, async, sync stream, async stream),
generates a suite of K tests (``--tests``), each making ONE chat completion
through ``seeded_llm`` and noting how long that call took. Three variants run
in live mode, round-robin after a warm-up round:

- **repeat 1**: ``--seedrepro-mode=live``, each call sent once;
- **repeat N**: ``--seedrepro-repeat=N``, the repeats sent together with the call;
- **repeat N serial**: ``--seedrepro-repeat=N --seedrepro-repeat-serial``, one at a time.

Every run must pass exactly K tests, and the server must have received K (or
K x N) requests. Printed per kind: the median of the calls' own durations (what a
test waits for its call) and the median wall time of the whole pytest run, and
their ratios to repeat 1; and, from the server's log, how many sends of one call
it had in hand at once (1 = one at a time). The goal of the repeat issue,
``repeat 5 / repeat 1 <= 1.6``, is printed as a reminder, never as a verdict.
syrupy is off in every run (``-p no:syrupy``): a repeat run snapshots nothing, so
the runs differ in their sends only.

Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# No __pycache__ in the repository, for _common here or tests/llmserver.py.
sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    NO_CACHE_HELP,
    PYTHON,
    REPO,
    TESTS_DIR,
    clean_env,
    interleaved,
    median_ms,
    run_pytest,
    spread_ms,
    use_pycache_prefix,
)

SRC = REPO / "src"
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:syrupy", "--seedrepro-mode=live"]

#: Each kind of call, as the line of a generated test that makes it.
CALLS = {
    "sync": "seeded_llm.complete(PROMPT, max_tokens=16)",
    "async": "await seeded_llm.acomplete(PROMPT, max_tokens=16)",
    "stream": "seeded_llm.complete(PROMPT, max_tokens=16, stream=True)",
    "async stream": "await seeded_llm.acomplete(PROMPT, max_tokens=16, stream=True)",
}

HEADER = """
import os
import time

import pytest


def note(seconds):
    with open(os.environ["SEEDREPRO_BENCH_TIMES"], "a") as out:
        out.write(f"{seconds}\\n")
"""

TEST = """

@pytest.mark.seed({seed})
{marker}{prefix}def test_call_{i}(seeded_llm):
    PROMPT = "Summarise ticket {i}."
    start = time.perf_counter()
    text = {call}
    note(time.perf_counter() - start)
    assert text
"""


def write_suite(root: Path, kind: str, k: int, base_url: str) -> None:
    """K one-call tests of ``kind`` in ``root``, with a pytest.ini pointing seedrepro at ``base_url``."""
    asynchronous = kind.startswith("async")
    body = HEADER + "".join(
        TEST.format(
            i=i,
            seed=100 + i,
            marker="@pytest.mark.asyncio\n" if asynchronous else "",
            prefix="async " if asynchronous else "",
            call=CALLS[kind],
        )
        for i in range(k)
    )
    root.mkdir(parents=True)
    (root / "test_calls.py").write_text(body)
    (root / "pytest.ini").write_text(
        f"[pytest]\nseedrepro_base_url = {base_url}\nasyncio_default_fixture_loop_scope = function\n"
    )


def most_at_once(requests: list[Any]) -> int:
    """The most sends the server had in hand together (from the order of its events, not a clock)."""
    return max((sum(1 for other in requests if other is r or r.overlaps(other)) for r in requests), default=0)


@dataclasses.dataclass
class Sample:
    """The runs of one kind of call: their calls' durations and the most sends at once, by variant."""

    server: Any
    root: Path
    kind: str
    k: int
    n: int
    latency: float
    call_times: dict[str, list[float]]
    at_once: dict[str, int]

    def run(self, name: str, extra: list[str]) -> float:
        """One pytest run of the suite with ``extra`` arguments; its wall time."""
        notes = self.root / "times.txt"
        notes.unlink(missing_ok=True)
        self.server.reset()
        self.server.latency = self.latency
        # This checkout's plugin, whichever one is installed.
        env = clean_env(OPENAI_API_KEY="anything", SEEDREPRO_BENCH_TIMES=str(notes), PYTHONPATH=str(SRC))
        wall = run_pytest(self.root, [*PYTEST_ARGS, *extra], env=env, expect_passed=self.k)
        sends = [r for r in self.server.requests if r.path.endswith("/chat/completions")]
        expected = self.k * (self.n if extra else 1)
        if len(sends) != expected:
            raise SystemExit(f"{self.kind}, {name}: the server got {len(sends)} requests, not {expected}")
        self.call_times[name].extend(float(line) for line in notes.read_text().split())
        self.at_once[name] = max(self.at_once[name], most_at_once(sends))
        return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant (default 3)")
    parser.add_argument("--tests", type=int, default=3, help="K, one-call tests per suite (default 3)")
    parser.add_argument("--latency", type=float, default=0.4, help="seconds each answer takes (default 0.4)")
    parser.add_argument("--repeat", type=int, default=5, help="N of --seedrepro-repeat (default 5)")
    parser.add_argument(
        "--kinds", nargs="*", choices=list(CALLS), default=list(CALLS), help="kinds of call (default all)"
    )
    parser.add_argument("--no-bytecode-cache", action="store_true", help=NO_CACHE_HELP)
    args = parser.parse_args()
    k, n, runs = args.tests, args.repeat, args.runs

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python: {PYTHON}; {os.cpu_count()} CPUs; load average {load}")
    print(
        f"{k} one-call tests per suite; the server answers in {args.latency:g} s; "
        f"{runs} runs per variant, interleaved, 1 warm-up round\n"
    )

    sys.path.insert(0, str(TESTS_DIR))
    from llmserver import running_server  # the project's OpenAI-compatible test server

    rows: list[tuple[str, str, float, str, float, str, int]] = []
    with tempfile.TemporaryDirectory(prefix="seedrepro-bench-") as tmp, running_server() as server:
        if not args.no_bytecode_cache:
            use_pycache_prefix(Path(tmp) / "pycache")
        server.latency = args.latency
        for kind in args.kinds:
            root = Path(tmp) / kind.replace(" ", "_")
            write_suite(root, kind, k, server.base_url)
            variants = {
                "repeat 1": [],
                f"repeat {n}": [f"--seedrepro-repeat={n}"],
                f"repeat {n} serial": [f"--seedrepro-repeat={n}", "--seedrepro-repeat-serial"],
            }
            call_times: dict[str, list[float]] = {name: [] for name in variants}
            at_once: dict[str, int] = {name: 0 for name in variants}
            sample = Sample(server, root, kind, k, n, args.latency, call_times, at_once)
            runners = {name: functools.partial(sample.run, name, extra) for name, extra in variants.items()}
            times = interleaved(runners, runs)
            base_call = statistics.median(call_times["repeat 1"][k:])  # the warm-up round left out
            base_wall = median_ms(times["repeat 1"])
            for name in variants:
                call = statistics.median(call_times[name][k:])
                wall = median_ms(times[name])
                rows.append(
                    (
                        kind,
                        name,
                        call * 1000,
                        f"{call / base_call:.2f}",
                        wall,
                        f"{wall / base_wall:.2f} ({spread_ms(times[name])})",
                        at_once[name],
                    )
                )

    print(
        f"  {'kind':<13} {'variant':<16} {'call ms':>8} {'x repeat 1':>10} {'run ms':>8}  "
        f"{'x repeat 1 (min..max ms)':<26} {'sends at once':>13}"
    )
    for kind, name, call_ms, call_ratio, wall, wall_ratio, together in rows:
        cells = f"{call_ms:8.0f} {call_ratio:>10} {wall:8.0f}  {wall_ratio:<26} {together:>13}"
        print(f"  {kind:<13} {name:<16} {cells}")
    print(
        "\n  call ms: median of the calls' own durations (what a test waits for its call); run ms: median "
        "wall time of the pytest run; sends at once: the most sends of a run the server had in hand together"
    )
    print("  goal of the repeat issue: repeat 5 / repeat 1 <= 1.6 (a reminder, not a verdict)")


if __name__ == "__main__":
    sys.exit(main())
