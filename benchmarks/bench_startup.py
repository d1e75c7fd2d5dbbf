"""What the plugin costs a test run's start-up, and what a suite pays once it uses ``seeded_llm``.

    python benchmarks/bench_startup.py [--runs 11]

(a) import time of ``pytest_seedrepro.plugin`` (``python -X importtime``), against
    the baseline ``import pytest``, and the heavy modules (openai, vcrpy, syrupy,
    httpx, httpx2) it pulls in beyond that baseline: there should be none.
    Also which heavy modules a whole pytest run has loaded at its end, with and
    without the plugin (syrupy registers its own pytest11 plugin, so some of it
    is always there; the point is that seedrepro adds nothing).
(b) a generated 200-test suite without LLM calls, wall clock of
    ``python -m pytest -q -p no:cacheprovider`` with the plugin and with
    ``-p no:seedrepro``, runs interleaved: medians, difference and ratio.
(c) the same suite plus one (then two) ``seeded_llm`` tests replayed from
    recordings: the wall-clock cost of the first LLM test (which imports openai,
    vcrpy and syrupy) and of the next one.

Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

# No __pycache__ in the repository, for _common here or tests/llmserver.py when recording.
sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    HEAVY,
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
    write_plain_suite,
)

PYTEST_ARGS = ["-q", "-p", "no:cacheprovider"]

# (a) -------------------------------------------------------------------------------------------------


def importtime(statement: str) -> dict[str, tuple[int, int, int]]:
    """``{module: (self_us, cumulative_us, depth)}`` from ``python -X importtime -c STATEMENT``."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", statement],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    modules: dict[str, tuple[int, int, int]] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        modules[name.strip()] = (int(self_us), int(cumulative_us), depth)
    return modules


@dataclass
class ImportFigures:
    plugin_cum_ms: float  # cumulative of the top-level pytest_seedrepro.plugin line (includes pytest)
    pytest_cum_ms: float  # cumulative of `import pytest` alone
    own_self_ms: float  # self time of the modules beyond `import pytest`
    extra_modules: list[str]  # modules beyond `import pytest`
    heavy: list[str]  # of those, the heavy ones (should be empty)


def bench_import(runs: int) -> ImportFigures:
    plugin_cum: list[float] = []
    pytest_cum: list[float] = []
    own_self: list[float] = []
    extra_names: set[str] = set()
    importtime("import pytest_seedrepro.plugin")  # warm-up: fills the bytecode cache
    for _ in range(runs):
        base = importtime("import pytest")
        plug = importtime("import pytest_seedrepro.plugin")
        top = plug["pytest_seedrepro.plugin"]
        if top[2] != 0:
            raise SystemExit("pytest_seedrepro.plugin was not imported at top level?")
        plugin_cum.append(top[1] / 1000)
        pytest_cum.append(base["pytest"][1] / 1000)
        extra = {name: v for name, v in plug.items() if name not in base}
        extra_names |= set(extra)
        own_self.append(sum(v[0] for v in extra.values()) / 1000)
    heavy = sorted(n for n in extra_names if n.split(".")[0] in HEAVY)
    return ImportFigures(
        plugin_cum_ms=statistics.median(plugin_cum),
        pytest_cum_ms=statistics.median(pytest_cum),
        own_self_ms=statistics.median(own_self),
        extra_modules=sorted(extra_names),
        heavy=heavy,
    )


#: What the fixture imports on first use (see pytest_seedrepro.plugin.seeded_llm and fixture.py).
FIXTURE_MODULES = (
    "pytest_seedrepro.verdict",
    "pytest_seedrepro.fixture",
    "pytest_seedrepro.intercept",
    "pytest_seedrepro.recording",
    "pytest_seedrepro.snapshots",
    "openai",
)


def fixture_import_breakdown(runs: int) -> tuple[float, dict[str, float]]:
    """Import time the first ``seeded_llm`` test adds to a pytest run, by top-level package.

    Baseline: pytest and every installed pytest11 plugin (what any run imports,
    syrupy's own plugin included); measured: that plus the fixture's modules.
    Returns (median total ms, {package: median self ms}).
    """
    plugins = sorted({e.value.split(":")[0] for e in entry_points(group="pytest11")})
    base_stmt = "import pytest, " + ", ".join(plugins)
    totals: list[float] = []
    per_package: dict[str, list[float]] = {}
    importtime(base_stmt + ", " + ", ".join(FIXTURE_MODULES))  # warm-up: fills the bytecode cache
    for _ in range(runs):
        base = importtime(base_stmt)
        full = importtime(base_stmt + ", " + ", ".join(FIXTURE_MODULES))
        extra = {name: v for name, v in full.items() if name not in base}
        totals.append(sum(v[0] for v in extra.values()) / 1000)
        sums: dict[str, float] = {}
        for name, v in extra.items():
            top = name.split(".")[0]
            sums[top] = sums.get(top, 0.0) + v[0] / 1000
        for top, ms in sums.items():
            per_package.setdefault(top, []).append(ms)
    medians = {top: statistics.median(v + [0.0] * (runs - len(v))) for top, v in per_package.items()}
    return statistics.median(totals), dict(sorted(medians.items(), key=lambda kv: -kv[1]))


PROBE = """
import os
import sys

HEAVY = {heavy!r}


def pytest_sessionfinish(session):
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
    with open(os.environ["SEEDREPRO_BENCH_PROBE_OUT"], "w") as f:
        f.write("\\n".join(loaded))
"""


def heavy_loaded_by_a_run(suite: Path, probe_dir: Path, plugin: bool) -> list[str]:
    """The heavy modules in ``sys.modules`` at the end of a pytest run of ``suite``."""
    out = probe_dir / ("with.txt" if plugin else "without.txt")
    env = clean_env(PYTHONPATH=str(probe_dir), SEEDREPRO_BENCH_PROBE_OUT=str(out))
    args = [*PYTEST_ARGS, "-p", "seedrepro_bench_probe"] + ([] if plugin else ["-p", "no:seedrepro"])
    run_pytest(suite, args, env=env)
    return [m for m in out.read_text().split("\n") if m]


def top_packages(modules: list[str]) -> str:
    tops = sorted({m.split(".")[0] for m in modules})
    counts = {t: sum(1 for m in modules if m.split(".")[0] == t) for t in tops}
    return ", ".join(f"{t} ({n} modules)" for t, n in counts.items()) or "none"


# (c) -------------------------------------------------------------------------------------------------

LLM_TESTS = [
    """
    @pytest.mark.seed(7)
    def test_llm_first(seeded_llm):
        text = seeded_llm.complete("Name a colour.", max_tokens=8)
        assert text
        assert seeded_llm.calls[0].replayed or os.environ.get("SEEDREPRO_BENCH_RECORDING")
    """,
    """
    @pytest.mark.seed(8)
    def test_llm_second(seeded_llm):
        text = seeded_llm.complete("Name a fruit.", max_tokens=8)
        assert text
        assert seeded_llm.calls[0].replayed or os.environ.get("SEEDREPRO_BENCH_RECORDING")
    """,
]


def write_llm_suite(root: Path, n_llm: int) -> int:
    n = write_plain_suite(root)
    body = "import os\n\nimport pytest\n" + "".join(textwrap.dedent(t) for t in LLM_TESTS[:n_llm])
    (root / "test_llm.py").write_text(body)
    return n + n_llm


# main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per variant (default 11)")
    parser.add_argument("--no-bytecode-cache", action="store_true", help=NO_CACHE_HELP)
    args = parser.parse_args()
    runs = args.runs

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"python: {PYTHON}; {os.cpu_count()} CPUs; load average {load}")
    cache = "none (every run compiles)" if args.no_bytecode_cache else "warm, in the temp dir"
    print(f"{runs} runs per variant, interleaved, 1 warm-up round; medians; bytecode cache: {cache}\n")

    with tempfile.TemporaryDirectory(prefix="seedrepro-bench-") as tmp:
        tmp_path = Path(tmp)
        if not args.no_bytecode_cache:
            use_pycache_prefix(tmp_path / "pycache")

        # (a)
        imp = bench_import(runs)
        print("(a) import time (python -X importtime), median of", runs)
        print(f"    import pytest_seedrepro.plugin, cumulative : {imp.plugin_cum_ms:8.1f} ms")
        print(f"    import pytest (baseline), cumulative       : {imp.pytest_cum_ms:8.1f} ms")
        print(f"    modules beyond `import pytest`             : {len(imp.extra_modules)}")
        print(f"      ({', '.join(imp.extra_modules)})")
        print(f"    their self time (the plugin's own cost)    : {imp.own_self_ms:8.1f} ms")
        print(f"    heavy modules beyond `import pytest`       : {', '.join(imp.heavy) or 'none'}")

        plain = tmp_path / "plain"
        plain.mkdir()
        write_ini(plain)
        n_plain = write_plain_suite(plain)

        probe_dir = tmp_path / "probe"
        probe_dir.mkdir()
        (probe_dir / "seedrepro_bench_probe.py").write_text(PROBE.format(heavy=HEAVY))
        loaded_without = heavy_loaded_by_a_run(plain, probe_dir, plugin=False)
        loaded_with = heavy_loaded_by_a_run(plain, probe_dir, plugin=True)
        added = sorted(set(loaded_with) - set(loaded_without))
        print("    heavy modules loaded by a whole pytest run of the plain suite:")
        print(f"      -p no:seedrepro : {top_packages(loaded_without)}")
        print(f"      with plugin     : {top_packages(loaded_with)}")
        print(f"      added by plugin : {', '.join(added) or 'none'}")

        # (b)
        def with_plugin() -> float:
            return run_pytest(plain, PYTEST_ARGS, expect_passed=n_plain)

        def without_plugin() -> float:
            return run_pytest(plain, [*PYTEST_ARGS, "-p", "no:seedrepro"], expect_passed=n_plain)

        times = interleaved({"with": with_plugin, "without": without_plugin}, runs)
        w, wo = median_ms(times["with"]), median_ms(times["without"])
        print(f"\n(b) {n_plain}-test suite without LLM calls, `python -m pytest {' '.join(PYTEST_ARGS)}`")
        print(f"    with plugin      : {w:8.1f} ms  (min..max {spread_ms(times['with'])} ms)")
        print(f"    -p no:seedrepro  : {wo:8.1f} ms  (min..max {spread_ms(times['without'])} ms)")
        print(f"    difference       : {w - wo:+8.1f} ms   ratio {w / wo:.3f}")
        min_diff_b = (min(times["with"]) - min(times["without"])) * 1000
        print(f"    difference of the fastest runs (less sensitive to other load): {min_diff_b:+.1f} ms")

        # (c)
        llm1, llm2 = tmp_path / "llm1", tmp_path / "llm2"
        llm1.mkdir()
        llm2.mkdir()
        n1 = write_llm_suite(llm1, 1)
        n2 = write_llm_suite(llm2, 2)
        record([llm1, llm2])  # once, against the test server; the timed runs below replay

        def plain_run() -> float:
            return with_plugin()

        def llm1_run() -> float:
            return run_pytest(llm1, PYTEST_ARGS, expect_passed=n1)

        def llm2_run() -> float:
            return run_pytest(llm2, PYTEST_ARGS, expect_passed=n2)

        times_c = interleaved({"plain": plain_run, "llm1": llm1_run, "llm2": llm2_run}, runs)
        p, l1, l2 = (median_ms(times_c[k]) for k in ("plain", "llm1", "llm2"))
        print("\n(c) the same suite plus seeded_llm tests replayed from recordings (plugin on, mode=replay)")
        for label, key, ms in (
            (f"{n_plain} plain tests", "plain", p),
            ("+ 1 LLM test", "llm1", l1),
            ("+ 2 LLM tests", "llm2", l2),
        ):
            print(f"    {label:<26} : {ms:8.1f} ms  (min..max {spread_ms(times_c[key])} ms)")
        print(f"    cost of the first LLM test : {l1 - p:+8.1f} ms per run (imports openai, vcrpy, syrupy)")
        print(f"    cost of the next LLM test  : {l2 - l1:+8.1f} ms per run")
        fastest = {key: min(t) * 1000 for key, t in times_c.items()}
        min_first = fastest["llm1"] - fastest["plain"]
        min_next = fastest["llm2"] - fastest["llm1"]
        print(f"    the same from the fastest runs: first {min_first:+.1f} ms, next {min_next:+.1f} ms")
        lazy_total, lazy_packages = fixture_import_breakdown(runs)
        top5 = ", ".join(f"{name} {ms:.0f}" for name, ms in list(lazy_packages.items())[:6])
        print(f"    of which imports (-X importtime, beyond pytest + pytest11 plugins): {lazy_total:.0f} ms")
        print(f"      by package, self ms: {top5}")

    print("\nsummary")
    rows = [
        ("plugin import, cumulative (incl. pytest)", f"{imp.plugin_cum_ms:.1f} ms"),
        ("`import pytest` alone, cumulative", f"{imp.pytest_cum_ms:.1f} ms"),
        ("plugin's own modules, self time", f"{imp.own_self_ms:.1f} ms"),
        ("heavy modules added at import", ", ".join(imp.heavy) or "none"),
        ("heavy modules added to a pytest run", ", ".join(added) or "none"),
        (f"{n_plain} plain tests, with plugin", f"{w:.1f} ms"),
        (f"{n_plain} plain tests, -p no:seedrepro", f"{wo:.1f} ms"),
        ("difference / ratio", f"{w - wo:+.1f} ms / {w / wo:.3f}"),
        ("  difference of the fastest runs", f"{min_diff_b:+.1f} ms"),
        ("first seeded_llm test (replay)", f"{l1 - p:+.1f} ms (fastest runs: {min_first:+.1f} ms)"),
        ("  of which imports (importtime)", f"{lazy_total:.1f} ms"),
        ("next seeded_llm test (replay)", f"{l2 - l1:+.1f} ms (fastest runs: {min_next:+.1f} ms)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"  {'figure'.ljust(width)} | value")
    print(f"  {'-' * width}-+-{'-' * 18}")
    for name, value in rows:
        print(f"  {name.ljust(width)} | {value}")


if __name__ == "__main__":
    main()
