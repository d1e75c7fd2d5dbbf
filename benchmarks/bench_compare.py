"""Replay side by side: the floor (a mocked SDK), the peer (pytest-recording + syrupy) and ours.

    pip install pytest-recording   # benchmark-only dependency, for the peer
    python benchmarks/bench_compare.py [--tests 500] [--runs 7] [--per-module 50]
                                       [--profile [VARIANT ...] [--steady]] [--no-bytecode-cache]

Three suites of N tests (``--tests``, default 500), ``--per-module`` tests to a
module, each test making ONE chat completion and checking it:

- **floor**: the openai SDK over an in-memory ``MockTransport`` (httpx's or
  httpx2's, whichever the installed openai is built on) that returns a canned
  chat completion; plain asserts; one shared client per module;
- **peer**: the same calls written by hand on pytest-recording
  (``@pytest.mark.vcr``, matching on method, scheme, host, port, path, query
  and body) plus syrupy (``assert snapshot == text``); one shared client per
  module; recorded once against tests/llmserver.py with ``--record-mode=once``,
  replayed with ``--record-mode=none``;
- **ours**: ``seeded_llm`` with ``seed`` and ``llm_params`` markers calling
  ``seeded_llm.complete``; recorded once with ``--seedrepro-mode=record
  --snapshot-update``, replayed in the default mode.

Each suite lives in a temporary directory of its own with its own pytest.ini,
and loads only the plugins its approach needs (floor: none of seedrepro,
pytest-recording, syrupy; peer: pytest-recording and syrupy; ours: seedrepro
and syrupy). The test server is stopped before any timed run. Timed runs
alternate round-robin after a warm-up round; every run must pass exactly N
tests, the peer must report N snapshots passed, and ours must report N calls
replayed and 0 live. Printed: min / median / max wall time of each variant, and
of the ratios ours/floor and ours/peer over the rounds (each round's pair), with
the goals of the replay-speed issue as a reminder. ``--profile`` adds a cProfile
of one replay run of ``ours`` (or of the variants named); ``--steady`` adds one
of tests 2..N only, each from set-up to teardown, without the one-off imports.

Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import statistics
import sys
import tempfile
from importlib import metadata
from pathlib import Path

# No __pycache__ in the repository, for _common here or tests/llmserver.py when recording.
sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    NO_CACHE_HELP,
    TESTS_DIR,
    clean_env,
    interleaved,
    run_pytest,
    use_pycache_prefix,
    write_ini,
)
from bench_replay import STEADY_PROBE, package_of, short_location  # noqa: E402

ARGS = ["-q", "-p", "no:cacheprovider"]

#: The plugins each suite runs without: what its approach does not use (all three are installed here).
PLUGINS_OFF = {
    "floor": ["-p", "no:seedrepro", "-p", "no:recording", "-p", "no:syrupy"],
    "peer": ["-p", "no:seedrepro"],
    "ours": ["-p", "no:recording"],
}

#: The goals of the replay-speed issue, printed as a reminder, never judged.
GOALS = {"floor": 1.25, "peer": 0.8}

#: Packages whose functions the ``--profile`` table lists: the plugin and what it brings in.
PROFILED = ("pytest_seedrepro", "vcr", "yaml", "syrupy", "openai")

FLOOR_CONFTEST = """
import openai

ANSWER = {
    "id": "chatcmpl-floor", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
    "system_fingerprint": "fp_floor",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


def http_module():
    # httpx for openai 1.x/2.x, httpx2 for 3.x: as pytest_seedrepro.session.http_module finds it.
    for base in openai.DefaultHttpxClient.__mro__:
        top = base.__module__.split(".")[0]
        if top in ("httpx", "httpx2"):
            return __import__(top)
    raise RuntimeError("cannot tell which httpx openai is built on")


def client():
    http = http_module()
    transport = http.MockTransport(lambda request: http.Response(200, json=ANSWER))
    return openai.OpenAI(api_key="x", max_retries=0, http_client=http.Client(transport=transport))
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
        seed={seed},
        temperature=0.5,
    )
    assert reply.choices[0].message.content == "an answer"
"""

PEER_CONFTEST = """
import pytest


@pytest.fixture(scope="module")
def vcr_config():
    return {
        "match_on": ["method", "scheme", "host", "port", "path", "query", "body"],
        "filter_headers": ["authorization"],
    }
"""

PEER_HEADER = """
import os

import openai
import pytest

CLIENT = openai.OpenAI(base_url=os.environ["BENCH_BASE_URL"], api_key="x", max_retries=0)
"""

PEER_TEST = """

@pytest.mark.vcr
def test_{n}(snapshot):
    reply = CLIENT.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{{"role": "user", "content": "question {n}"}}],
        seed={seed},
        temperature=0.5,
    )
    assert snapshot == reply.choices[0].message.content
"""

OURS_HEADER = """
import pytest
"""

OURS_TEST = """

@pytest.mark.seed({seed})
@pytest.mark.llm_params(temperature=0.5)
def test_{n}(seeded_llm):
    assert seeded_llm.complete("question {n}")
"""


#: A ``-p`` plugin for ``--phases``: real time (no profiler), tests 2..N, medians per test.
PHASE_PROBE = """
import os
import statistics
import time

import pytest

_times = {}
_seen = 0
_PARTS = {  # module: (owner attribute or None, function): what the plugin does per test, by part
    "pytest_seedrepro.recording": [("Recording", "load_cassette", "recording: read and parse")],
    "pytest_seedrepro.snapshots": [
        (None, "read_stored", "snapshot: locate and read"),
        (None, "parse", "snapshot: parse"),
    ],
    "pytest_seedrepro.verdict": [(None, "after_body", "verdict (snapshot read and parse included)")],
    "pytest_seedrepro.writes": [(None, "finish", "end of test (syrupy's assertion)")],
    "pytest_seedrepro.intercept": [("ActiveTest", "before_request", "pinning a request")],
    "pytest_seedrepro.fixture": [("SeededLLM", "complete", "complete() (the SDK call included)")],
}


def _note(label, seconds):
    if _seen > 1:
        _times.setdefault(label, []).append(seconds)


def _timed(function, label):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _note(label, time.perf_counter() - start)

    return timed


def pytest_configure(config):
    import importlib

    if not config.pluginmanager.hasplugin("seedrepro"):
        return
    for module_name, parts in _PARTS.items():
        module = importlib.import_module(module_name)
        for owner_name, name, label in parts:
            owner = getattr(module, owner_name) if owner_name else module
            setattr(owner, name, _timed(getattr(owner, name), label))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    global _seen
    _seen += 1
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        _note("whole test (pytest's protocol)", time.perf_counter() - start)


def _phase(when):
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def hook(item):
        start = time.perf_counter()
        try:
            return (yield)
        finally:
            _note(f"{when}", time.perf_counter() - start)

    return hook


pytest_runtest_setup = _phase("set-up")
pytest_runtest_call = _phase("call (body and verdict)")
pytest_runtest_teardown = _phase("tear-down")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if fixturedef.argname == "seeded_llm":
            _note("seeded_llm set-up (recording read included)", time.perf_counter() - start)


def pytest_unconfigure(config):
    with open(os.environ["SEEDREPRO_BENCH_PHASES_OUT"], "w") as out:
        for label, values in _times.items():
            out.write(f"{statistics.median(values) * 1000:.3f}\\t{len(values)}\\t{label}\\n")
"""


def write_suite(root: Path, tests: int, per_module: int, header: str, test: str, conftest: str = "") -> int:
    """``tests`` tests, ``per_module`` to a module, each module ``header`` then its tests.

    Returns the number of modules.
    """
    root.mkdir(parents=True)
    if conftest:
        (root / "conftest.py").write_text(conftest.lstrip())
    modules = 0
    for start in range(0, tests, per_module):
        body = "".join(test.format(n=n, seed=100 + n) for n in range(start, min(tests, start + per_module)))
        (root / f"test_m{modules:03d}.py").write_text(header.lstrip() + body)
        modules += 1
    return modules


def count(root: Path, pattern: str) -> int:
    return sum(1 for _ in root.glob(pattern))


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    import openai
    import yaml

    from pytest_seedrepro.session import http_module

    http = http_module(openai.DefaultHttpxClient).__name__
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    libyaml = "libyaml" if getattr(yaml, "__with_libyaml__", False) else "no libyaml"
    return (
        f"machine: {cpus} CPUs usable (nproc), load average {load}; {platform.platform()}\n"
        f"python {platform.python_version()}; pytest {version('pytest')}, openai {version('openai')} "
        f"(on {http} {version(http)}), vcrpy {version('vcrpy')}, syrupy {version('syrupy')}, "
        f"pytest-recording {version('pytest-recording')}, PyYAML {version('PyYAML')} ({libyaml}), "
        f"pydantic {version('pydantic')}"
    )


def three(values: list[float]) -> str:
    """Min, median and max of ``values``, in columns."""
    return "  ".join(f"{v:8.3f}" for v in (min(values), statistics.median(values), max(values)))


def print_profile(prof: Path, title: str, tests: int, whole: bool = True, top: int = 25) -> None:
    """The top ``top`` functions by cumulative time inside :data:`PROFILED`, and self time by package.

    ``tests`` is what the ms/test column divides by; ``whole`` says the profile
    covers a whole process (its total is its largest cumulative time), not the
    sum of slices (whose total is the sum of self times).
    """
    stats = pstats.Stats(str(prof))
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tt, ct, callers)}
    total = (
        max(ct for (_, _, _, ct, _) in entries.values())
        if whole
        else sum(tt for (_, _, tt, _, _) in entries.values())
    )
    print(f"\n{title}: {total:.2f} s under the profiler, {total / tests * 1000:.3f} ms/test")
    print(f"\n  top {top} by cumulative time inside {', '.join(PROFILED)}")
    print(f"  {'calls':>8} {'self s':>7} {'cum s':>7} {'cum %':>6} {'ms/test':>8}  function")
    inside = sorted((k for k in entries if package_of(k[0]) in PROFILED), key=lambda k: -entries[k][3])
    for key in inside[:top]:
        _, nc, tt, ct, _ = entries[key]
        share, per_test = 100 * ct / total, ct / tests * 1000
        print(f"  {nc:8d} {tt:7.3f} {ct:7.3f} {share:5.1f}% {per_test:8.3f}  {short_location(*key)}")
    selfs: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, _) in entries.items():
        selfs[package_of(filename)] = selfs.get(package_of(filename), 0.0) + tt
    print("\n  self time by package")
    for pkg, tt in sorted(selfs.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {tt:7.3f} s {100 * tt / total:5.1f}% {tt / tests * 1000:8.3f} ms/test  {pkg}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=500, help="N, tests in each suite (default 500)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant (default 7)")
    parser.add_argument("--per-module", type=int, default=50, help="tests to a module (default 50)")
    parser.add_argument(
        "--profile",
        nargs="*",
        choices=list(PLUGINS_OFF),
        metavar="VARIANT",
        help="after the timed runs, cProfile one replay run of ours (or of the variants named)",
    )
    parser.add_argument(
        "--steady",
        action="store_true",
        help="with --profile: also profile tests 2..N of one more run, each from set-up to teardown "
        "(no one-off imports): the steady cost of a test",
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="after the timed runs, time tests 2..N of one more floor and ours run each, without a "
        "profiler: median ms per test of pytest's phases and of the plugin's parts",
    )
    parser.add_argument("--no-bytecode-cache", action="store_true", help=NO_CACHE_HELP)
    options = parser.parse_args()
    n, runs = options.tests, options.runs
    try:
        import pytest_recording  # noqa: F401
    except ImportError:
        raise SystemExit("the peer needs pytest-recording: pip install pytest-recording") from None

    print(machine())
    with tempfile.TemporaryDirectory(prefix="seedrepro-compare-") as tmp:
        base = Path(tmp)
        if not options.no_bytecode_cache:
            use_pycache_prefix(base / "pycache")
        cache = "none (every run compiles)" if options.no_bytecode_cache else "warm, in the temp dir"
        roots = {name: base / name for name in PLUGINS_OFF}
        modules = write_suite(roots["floor"], n, options.per_module, FLOOR_HEADER, FLOOR_TEST, FLOOR_CONFTEST)
        write_suite(roots["peer"], n, options.per_module, PEER_HEADER, PEER_TEST, PEER_CONFTEST)
        write_suite(roots["ours"], n, options.per_module, OURS_HEADER, OURS_TEST)
        print(
            f"{n} tests in {modules} modules, one chat completion each; {runs} alternating runs per "
            f"variant after 1 warm-up round; bytecode cache: {cache}"
        )

        sys.path.insert(0, str(TESTS_DIR))
        from llmserver import running_server  # the project's OpenAI-compatible test server

        for name in PLUGINS_OFF:
            write_ini(roots[name])
        with running_server() as server:
            base_url = server.base_url
            write_ini(roots["ours"], base_url)
            run_pytest(
                roots["ours"],
                [*ARGS, *PLUGINS_OFF["ours"], "--seedrepro-mode=record", "--snapshot-update"],
                env=clean_env(OPENAI_API_KEY="x"),
                expect_passed=n,
                expect_output=[rf"{n} test\(s\) with seeded_llm: 0 call\(s\) replayed, {n} live"],
            )
            run_pytest(
                roots["peer"],
                [*ARGS, *PLUGINS_OFF["peer"], "--record-mode=once", "--snapshot-update"],
                env=clean_env(BENCH_BASE_URL=base_url),
                expect_passed=n,
                expect_output=[rf"\b{n} snapshots generated"],
            )
        # The server is stopped: from here on, a call that is not replayed fails its test.
        peer_cassettes = count(roots["peer"], "cassettes/*/*.yaml")
        ours_cassettes = count(roots["ours"], "**/cassettes/**/*.yaml")
        if peer_cassettes != n or ours_cassettes != n:
            raise SystemExit(f"expected {n} cassettes each, got peer {peer_cassettes}, ours {ours_cassettes}")
        print(f"recorded: {n} cassettes each for peer and ours, and their snapshots\n")

        expect = {
            "floor": [],
            "peer": [rf"\b{n} snapshots passed"],
            "ours": [rf"{n} test\(s\) with seeded_llm: {n} call\(s\) replayed, 0 live"],
        }
        extra = {"floor": [], "peer": ["--record-mode=none"], "ours": []}
        env = {"floor": clean_env(), "peer": clean_env(BENCH_BASE_URL=base_url), "ours": clean_env()}

        def replay(name: str, python_args: list[str] | None = None) -> float:
            return run_pytest(
                roots[name],
                [*ARGS, *PLUGINS_OFF[name], *extra[name]],
                env=env[name],
                python_args=python_args or [],
                expect_passed=n,
                expect_output=expect[name],
            )

        times = interleaved({name: (lambda name=name: replay(name)) for name in PLUGINS_OFF}, runs)

        print(f"  {'wall s':<12} {'min':>8}  {'median':>8}  {'max':>8}   {'median ms/test':>14}")
        for name, values in times.items():
            print(f"  {name:<12} {three(values)}   {statistics.median(values) / n * 1000:14.2f}")
        print(f"\n  {'ratio':<12} {'min':>8}  {'median':>8}  {'max':>8}   {'ours - that, ms/test':>20}")
        for other in GOALS:
            pairs = list(zip(times["ours"], times[other], strict=True))
            ratios = [o / t for o, t in pairs]
            excess = statistics.median(o - t for o, t in pairs) / n * 1000
            print(f"  {'ours/' + other:<12} {three(ratios)}   {excess:20.2f}")
        print(
            f"\n  goal: ours/floor <= {GOALS['floor']}, ours/peer <= {GOALS['peer']}  (printed, not judged)"
        )
        print("  ratios are each round's pair; 'ours - that' is the median of the rounds' differences / N")

        probe = base / "probe"
        probe.mkdir()
        (probe / "seedrepro_bench_steady.py").write_text(STEADY_PROBE)
        (probe / "seedrepro_bench_phases.py").write_text(PHASE_PROBE)
        if options.phases:
            print(f"\nreal time of tests 2..{n} (no profiler), median ms per test:")
            for name in ("floor", "ours"):
                out = base / f"{name}.phases"
                run_pytest(
                    roots[name],
                    [*ARGS, *PLUGINS_OFF[name], *extra[name], "-p", "seedrepro_bench_phases"],
                    env={**env[name], "PYTHONPATH": str(probe), "SEEDREPRO_BENCH_PHASES_OUT": str(out)},
                    expect_passed=n,
                    expect_output=expect[name],
                )
                print(f"  {name}")
                for line in out.read_text().splitlines():
                    median, times, label = line.split("\t")
                    print(f"    {float(median):7.3f}  {label} ({times}x)")
        for name in [] if options.profile is None else options.profile or ["ours"]:
            prof = base / f"{name}.prof"
            replay(name, python_args=["-m", "cProfile", "-o", str(prof)])
            print_profile(prof, f"cProfile of one {name} replay run ({n} tests)", n)
            if options.steady:
                prof = base / f"{name}.steady.prof"
                env[name] = {**env[name], "PYTHONPATH": str(probe), "SEEDREPRO_BENCH_PROFILE_OUT": str(prof)}
                extra[name] += ["-p", "seedrepro_bench_steady"]
                replay(name)
                title = f"cProfile of tests 2..{n} of one {name} replay run (set-up to teardown)"
                print_profile(prof, title, n - 1, whole=False)


if __name__ == "__main__":
    main()
