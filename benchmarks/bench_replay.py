"""How fast a suite of recorded LLM tests replays, serially and under pytest-xdist, and where the time goes.

    python benchmarks/bench_replay.py [--runs 7] [--tests 50] [--workers 2]

Generates K tests (``--tests``, default 50), each making two chat calls through
``seeded_llm``, records them once against the project's test server
(tests/llmserver.py), then times replay runs (``mode=replay``: no server, no
network, no key) with and without ``-n WORKERS``, interleaved with a suite of K
plain tests as the start-up baseline. Prints medians, ms per test (wall / K)
and the marginal ms per test ((replay - plain) / K, i.e. without start-up and
worker boot). Then profiles one serial replay run with cProfile and prints the
top 15 functions by cumulative time, the top 15 inside the plugin and its
dependencies, and self time by package.

Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import os
import pstats
import sys
import tempfile
from pathlib import Path

# No __pycache__ in the repository, for _common here or tests/llmserver.py when recording.
sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    NO_CACHE_HELP,
    PYTHON,
    clean_env,
    interleaved,
    median_ms,
    record,
    run_pytest,
    spread_ms,
    use_pycache_prefix,
    write_ini,
)

PYTEST_ARGS = ["-q", "-p", "no:cacheprovider"]

#: Top-level packages that are the plugin or what it brings in (for the filtered profile).
PLUGIN_SIDE = (
    "pytest_seedrepro",
    "openai",
    "vcr",
    "yaml",
    "syrupy",
    "httpx",
    "httpx2",
    "httpcore",
    "pydantic",
    "pydantic_core",
    "anyio",
)

LLM_TEST = """
@pytest.mark.seed({seed})
def test_replay_{i}(seeded_llm):
    first = seeded_llm.complete("Summarise ticket {i}.", max_tokens=16)
    second = seeded_llm.complete([{{"role": "user", "content": "Classify ticket {i}."}}], max_tokens=4)
    assert first and second and len(seeded_llm.calls) == 2
    assert all(c.replayed for c in seeded_llm.calls) or os.environ.get("SEEDREPRO_BENCH_RECORDING")
"""

PLAIN_TEST = """
def test_plain_{i}():
    assert sum([{i}, 1]) == {i} + 1
"""


#: A pytest plugin (loaded with ``-p``) that profiles every test but the first, set-up to teardown:
#: the steady-state cost of a replayed test, without the one-off imports of the first one.
STEADY_PROBE = """
import cProfile
import os

import pytest

_profiler = cProfile.Profile()
_seen = 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _seen
    _seen += 1
    if _seen == 1:
        return (yield)
    _profiler.enable()
    try:
        return (yield)
    finally:
        _profiler.disable()


def pytest_sessionfinish(session):
    _profiler.dump_stats(os.environ["SEEDREPRO_BENCH_PROFILE_OUT"])
"""


def write_suites(replay: Path, plain: Path, k: int, per_module: int = 10) -> None:
    """K two-call LLM tests in ``replay`` and K plain tests in ``plain``, ``per_module`` per file."""
    for root, template, header in (
        (replay, LLM_TEST, "import os\n\nimport pytest\n"),
        (plain, PLAIN_TEST, ""),
    ):
        root.mkdir()
        for start in range(0, k, per_module):
            ids = range(start, min(start + per_module, k))
            body = header + "".join(template.format(i=i, seed=100 + i) for i in ids)
            (root / f"test_m{start // per_module:02d}.py").write_text(body)
    write_ini(plain)


def short_location(filename: str, line: int, func: str) -> str:
    """``vcr/cassette.py:123(load)`` instead of an absolute site-packages path."""
    if filename == "~":
        return func  # a built-in, e.g. <built-in method builtins.exec>
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python":
                filename = "stdlib/" + filename.split("/", 1)[-1]
            break
    return f"{filename}:{line}({func})"


def package_of(filename: str) -> str:
    if filename == "~":
        return "(built-ins)"
    if filename.startswith("<frozen"):
        return "(import machinery)"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/src/pytest_seedrepro/" in filename:
        return "pytest_seedrepro"
    if "/lib/python" in filename:
        return "(stdlib)"
    return "(suite)"


def print_profile(prof_file: Path, title: str, top: int = 15, whole: bool = True) -> None:
    stats = pstats.Stats(str(prof_file))
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tt, ct, callers)}
    total = (
        max(ct for (_, _, _, ct, _) in entries.values())
        if whole
        else sum(tt for (_, _, tt, _, _) in entries.values())
    )
    print(f"\n{title} ({total:.2f} s under the profiler)")

    def table(title: str, keys: list[tuple[str, int, str]]) -> None:
        print(f"\n  {title}")
        print(f"  {'calls':>8} {'self s':>8} {'cum s':>8} {'cum %':>6}  function")
        for key in keys:
            _, nc, tt, ct, _ = entries[key]
            print(f"  {nc:8d} {tt:8.3f} {ct:8.3f} {100 * ct / total:5.1f}%  {short_location(*key)}")

    by_cum = sorted(entries, key=lambda k: -entries[k][3])
    if whole:
        table(f"top {top} by cumulative time", by_cum[:top])
    plugin_side = [k for k in by_cum if package_of(k[0]) in PLUGIN_SIDE]
    table(f"top {top} by cumulative time inside the plugin and its dependencies", plugin_side[:top])

    selfs: dict[str, float] = {}
    for (filename, _, _), (_, _, tt, _, _) in entries.items():
        pkg = package_of(filename)
        selfs[pkg] = selfs.get(pkg, 0.0) + tt
    print("\n  self time by package")
    for pkg, tt in sorted(selfs.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {tt:8.3f} s {100 * tt / total:5.1f}%  {pkg}")
    by_self = sorted(entries, key=lambda k: -entries[k][2])
    table(f"top {top // 2 + 3} by self time", by_self[: top // 2 + 3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant (default 7)")
    parser.add_argument("--tests", type=int, default=50, help="K, the number of replayed tests (default 50)")
    parser.add_argument(
        "--workers", type=int, default=2, help="xdist workers for the parallel runs (default 2)"
    )
    parser.add_argument("--no-bytecode-cache", action="store_true", help=NO_CACHE_HELP)
    args = parser.parse_args()
    k, runs, n = args.tests, args.runs, str(args.workers)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python: {PYTHON}; {os.cpu_count()} CPUs; load average {load}")
    cache = "none (every run compiles)" if args.no_bytecode_cache else "warm, in the temp dir"
    print(f"{k} tests x 2 chat calls, replayed; {runs} runs per variant, interleaved, 1 warm-up round")
    print(f"bytecode cache: {cache}\n")

    with tempfile.TemporaryDirectory(prefix="seedrepro-bench-") as tmp:
        if not args.no_bytecode_cache:
            use_pycache_prefix(Path(tmp) / "pycache")
        replay, plain = Path(tmp) / "replay", Path(tmp) / "plain"
        write_suites(replay, plain, k)
        record([replay])  # once, against the test server; everything below replays
        cassettes = sorted(replay.rglob("cassettes/**/*.yaml"))
        size = sum(p.stat().st_size for p in cassettes)
        print(f"recorded {len(cassettes)} cassettes ({size / 1024:.0f} KiB) and their snapshots\n")

        xdist = ["-n", n]
        variants = {
            "replay serial": lambda: run_pytest(replay, PYTEST_ARGS, expect_passed=k),
            f"replay -n {n}": lambda: run_pytest(replay, [*PYTEST_ARGS, *xdist], expect_passed=k),
            "plain serial": lambda: run_pytest(plain, PYTEST_ARGS, expect_passed=k),
            f"plain -n {n}": lambda: run_pytest(plain, [*PYTEST_ARGS, *xdist], expect_passed=k),
        }
        times = interleaved(variants, runs)
        med = {name: median_ms(t) for name, t in times.items()}

        print(
            f"  {'variant':<16} {'median ms':>10} {'min..max ms':>13} {'ms/test':>8} {'marginal ms/test':>17}"
        )
        for mode in ("serial", f"-n {n}"):
            r, p = med[f"replay {mode}"], med[f"plain {mode}"]
            spread = spread_ms(times[f"replay {mode}"])
            print(f"  {'replay ' + mode:<16} {r:10.1f} {spread:>13} {r / k:8.2f} {(r - p) / k:17.2f}")
            spread = spread_ms(times[f"plain {mode}"])
            print(f"  {'plain ' + mode:<16} {p:10.1f} {spread:>13} {p / k:8.2f} {'':>17}")
        speedup = med["replay serial"] / med[f"replay -n {n}"]
        print(f"\n  -n {n} speed-up of the replay suite: x{speedup:.2f} (wall serial / wall -n {n})")
        print("  ms/test = median wall / K; marginal = (replay - plain of the same K) / K")

        prof = Path(tmp) / "replay.prof"
        run_pytest(replay, PYTEST_ARGS, python_args=["-m", "cProfile", "-o", str(prof)], expect_passed=k)
        print_profile(prof, "cProfile of one whole serial replay run (`python -m cProfile -m pytest`)")

        probe_dir = Path(tmp) / "probe"
        probe_dir.mkdir()
        (probe_dir / "seedrepro_bench_steady.py").write_text(STEADY_PROBE)
        steady = Path(tmp) / "steady.prof"
        env = clean_env(PYTHONPATH=str(probe_dir), SEEDREPRO_BENCH_PROFILE_OUT=str(steady))
        run_pytest(replay, [*PYTEST_ARGS, "-p", "seedrepro_bench_steady"], env=env, expect_passed=k)
        print_profile(
            steady,
            f"cProfile of tests 2..{k} of a serial replay run (set-up to teardown; no one-off imports)",
            whole=False,
        )


if __name__ == "__main__":
    sys.exit(main())
