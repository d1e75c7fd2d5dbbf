"""What installing pytest-seedrepro costs a suite that never uses it, measured against a venv without it.

    python benchmarks/bench_install.py [--runs 11]

``bench_startup.py`` compares one venv with and without ``-p no:seedrepro``:
that leaves out what installing the package brings along. Installing it also
installs syrupy, whose own pytest plugin (its ``pytest11`` entry point) loads on
every pytest run of the project, used or not. The honest figure compares two
virtual environments built here, in a temporary directory:

- **without**: pytest and openai only (the versions of the interpreter running
  this script), what a project has before it adds the plugin;
- **with**: the same, plus this package installed from the working tree (not
  editable), which brings syrupy, vcrpy and PyYAML.

The same generated suite of 200 plain tests (no LLM call) is timed in both,
interleaved, and in the second also with ``-p no:syrupy`` (the README's advice
for suites that never snapshot) and with ``-p no:syrupy -p no:seedrepro``.
Figures are printed, never judged: this is not a test and exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.dont_write_bytecode = True

from _common import (  # noqa: E402
    REPO,
    clean_env,
    interleaved,
    median_ms,
    spread_ms,
    use_pycache_prefix,
    write_ini,
    write_plain_suite,
)


def make_venv(path: Path, requirements: list[str]) -> Path:
    """A fresh venv at ``path`` with ``requirements``; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True,
    )
    return python


def timed_run(python: Path, root: Path, args: list[str], expected: int) -> float:
    """Wall-clock seconds of one pytest run of ``root`` with ``python``; exits if it did not pass."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or f"{expected} passed" not in proc.stdout:
        sys.stderr.write(f"unexpected run in {root} ({python}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}\n")
        raise SystemExit(1)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=11, help="timed rounds (default 11)")
    args = parser.parse_args()
    pins = [f"pytest=={version('pytest')}", f"openai=={version('openai')}"]
    with tempfile.TemporaryDirectory(prefix="seedrepro-bench-install-") as tmp:
        base = Path(tmp)
        use_pycache_prefix(base / "pycache")
        print(f"building two venvs ({', '.join(pins)}) ...", flush=True)
        without = make_venv(base / "without", pins)
        with_plugin = make_venv(base / "with", [*pins, str(REPO)])
        suite = base / "suite"
        suite.mkdir()
        tests = write_plain_suite(suite)
        write_ini(suite)
        variants = {
            "without the package": lambda: timed_run(without, suite, [], tests),
            "with the package": lambda: timed_run(with_plugin, suite, [], tests),
            "with, -p no:syrupy": lambda: timed_run(with_plugin, suite, ["-p", "no:syrupy"], tests),
            "with, -p no:syrupy -p no:seedrepro": lambda: timed_run(
                with_plugin, suite, ["-p", "no:syrupy", "-p", "no:seedrepro"], tests
            ),
        }
        times = interleaved(variants, args.runs)
    floor = median_ms(times["without the package"])
    print(f"\n{tests} plain tests, `pytest -q -p no:cacheprovider`, medians of {args.runs} interleaved runs")
    print(f"{'variant':38} {'median ms':>10} {'min..max':>12} {'ratio':>6}")
    for name, seconds in times.items():
        ratio = median_ms(seconds) / floor
        print(f"{name:38} {median_ms(seconds):10.0f} {spread_ms(seconds):>12} {ratio:6.2f}")


if __name__ == "__main__":
    main()
