"""Helpers shared by the benchmark scripts (not a benchmark itself; not collected by pytest).

Everything here runs pytest in subprocesses inside temporary directories, so
nothing is ever written into the repository.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO / "tests"
PYTHON = sys.executable

#: Modules the plugin must not import unless a test uses ``seeded_llm``.
HEAVY = ("openai", "vcr", "syrupy", "httpx", "httpx2")

#: Environment variables that would change what the timed pytest runs do.
_SCRUBBED_ENV = (
    "SEEDREPRO_MODE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTEST_XDIST_AUTO_NUM_WORKERS",
    "PYTHONPATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
)

_pycache_prefix: Path | None = None

NO_CACHE_HELP = (
    "write no bytecode: every run compiles every module it imports from source (what an environment "
    "with PYTHONDONTWRITEBYTECODE=1 and no precompiled .pyc files does); default: a warm cache in the "
    "temp dir"
)


def use_pycache_prefix(path: Path) -> None:
    """Let every subprocess write and reuse bytecode (and pytest's rewritten test modules) under ``path``.

    Timed runs then see a warm bytecode cache, as on a developer machine or a CI
    job with a cache, even when the calling environment sets
    PYTHONDONTWRITEBYTECODE, and nothing is written next to the sources (the
    repository's src/ included): Python and pytest's assertion rewriting both
    honour ``sys.pycache_prefix``.
    """
    global _pycache_prefix
    _pycache_prefix = path


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without anything that steers pytest or the plugin, plus ``extra``.

    Without :func:`use_pycache_prefix`, no bytecode is written at all.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    if _pycache_prefix is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = str(_pycache_prefix)
    env.update(extra)
    return env


def run_pytest(
    cwd: Path,
    args: Sequence[str],
    env: dict[str, str] | None = None,
    python_args: Sequence[str] = (),
    expect_passed: int | None = None,
    expect_output: Sequence[str] = (),
) -> float:
    """Run ``python -m pytest ARGS`` in ``cwd``; return its wall-clock seconds.

    Exits the benchmark if pytest failed, (with ``expect_passed``) did not pass
    exactly that many tests, or its output lacks one of the ``expect_output``
    regular expressions: a figure for a run that did something else is worthless.
    """
    cmd = [PYTHON, *python_args, "-m", "pytest", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(f"command failed ({proc.returncode}) in {cwd}: {' '.join(cmd)}\n")
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(1)
    if expect_passed is not None:
        found = re.search(r"(\d+) passed", proc.stdout)
        if not found or int(found.group(1)) != expect_passed:
            sys.stderr.write(f"expected {expect_passed} passed in {cwd}, got:\n{proc.stdout[-2000:]}\n")
            raise SystemExit(1)
    for pattern in expect_output:
        if not re.search(pattern, proc.stdout):
            sys.stderr.write(f"expected /{pattern}/ in the output in {cwd}, got:\n{proc.stdout[-2000:]}\n")
            raise SystemExit(1)
    return elapsed


def interleaved(
    variants: dict[str, Callable[[], float]], runs: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time each variant ``runs`` times, round-robin (rotating the order each round), after ``warmup`` rounds.

    Interleaving spreads slow drifts of the machine (other load, CPU frequency)
    over all variants instead of charging them to whichever ran last.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            times[name].append(variants[name]())
    return times


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000.0


def spread_ms(seconds: Sequence[float]) -> str:
    """Min and max in ms, to show how noisy a median is."""
    return f"{min(seconds) * 1000:.0f}..{max(seconds) * 1000:.0f}"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())


def write_plain_suite(root: Path, modules: int = 5, plain_per_module: int = 30, params: int = 10) -> int:
    """A non-LLM suite: per module ``plain_per_module`` plain tests and one test with ``params`` cases.

    Returns the number of tests (200 with the defaults).
    """
    param_values = ", ".join(str(i) for i in range(params))
    for m in range(modules):
        lines = ["import pytest", ""]
        for t in range(plain_per_module):
            lines += [
                "",
                f"def test_plain_{t}():",
                f"    values = [{m}, {t}, {m + t}]",
                f"    assert sum(values) == {2 * (m + t)}",
                "",
            ]
        lines += [
            "",
            f"@pytest.mark.parametrize('n', [{param_values}])",
            "def test_param(n):",
            "    assert n * n >= 0 and str(n).isdigit()",
            "",
        ]
        (root / f"test_plain_{m}.py").write_text("\n".join(lines))
    return modules * (plain_per_module + params)


def write_ini(root: Path, base_url: str | None = None) -> None:
    """A pytest.ini that makes ``root`` the rootdir (so no outer configuration is picked up)."""
    text = "[pytest]\n"
    if base_url is not None:
        text += f"seedrepro_base_url = {base_url}\n"
    (root / "pytest.ini").write_text(text)


def record(roots: Sequence[Path]) -> None:
    """Record cassettes and snapshots for the suites in ``roots`` against the project's test server.

    Each root's pytest.ini gets the server's base URL, which stays there: replay
    matches on the URL, and never needs the server (it is stopped before any
    timed run). ``SEEDREPRO_BENCH_RECORDING`` is set during recording only, so
    generated tests can assert that their calls were replayed in every other run.
    """
    sys.path.insert(0, str(TESTS_DIR))
    from llmserver import running_server  # the project's OpenAI-compatible test server

    with running_server() as server:
        for root in roots:
            write_ini(root, server.base_url)
            run_pytest(
                root,
                ["-q", "-p", "no:cacheprovider", "--seedrepro-mode=record", "--snapshot-update"],
                env=clean_env(OPENAI_API_KEY="anything", SEEDREPRO_BENCH_RECORDING="1"),
            )
    for root in roots:
        if not any(root.rglob("cassettes/**/*.yaml")):
            raise SystemExit(f"recording produced no cassettes in {root}")
