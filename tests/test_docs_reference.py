"""The docs cannot drift: docs/reference.md against what the plugin registers, and the README for PyPI.

The options, ini keys, markers and hooks come from pytest itself, in-process:
``--help`` and ``--markers`` of a run with the plugin compared with one without
it (so anything the plugin adds counts, whatever its name), the flags' ini
twins and the effective defaults from a parsed config, and the hookspecs as
pluggy reads them. The page is parsed by its sections (``## Options``,
``## Markers``, ``## Hooks``), so a row added, removed or renamed on either
side fails here.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_seedrepro import hookspecs, options

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
README = ROOT / "README.md"

#: Each option's effective default, read from the run's resolved settings; ``None``
#: means "not set" (the page says so in words: none, off, the SDK's). A new option
#: fails ``test_every_option_is_documented_with_its_ini_key`` until it is added here.
EFFECTIVE_DEFAULT: dict[str, Callable[[options.Settings], Any]] = {
    "seedrepro_mode": lambda s: s.mode,
    "seedrepro_on_fingerprint_change": lambda s: s.on_fingerprint_change,
    "seedrepro_seed": lambda s: s.default_seed,
    "seedrepro_model": lambda s: s.model,
    "seedrepro_base_url": lambda s: s.base_url,
    "seedrepro_cassette_dir": lambda s: s.cassette_dir,
    "seedrepro_report": lambda s: s.report_file,
    "seedrepro_html": lambda s: s.html_file,
    "seedrepro_repeat": lambda s: s.repeat if s.repeat > 1 else None,
    "seedrepro_repeat_serial": lambda s: s.repeat_serial or None,
    "seedrepro_only_drifted": lambda s: s.only_drifted or None,
}


def section(page: str, title: str) -> str:
    """The text of the ``## title`` section of a markdown page (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", page, re.MULTILINE | re.DOTALL)
    assert match, f"docs/reference.md has no '## {title}' section"
    return match.group(1)


def table(text: str) -> list[dict[str, str]]:
    """The first markdown table in ``text``, one dict per row keyed by the header cells."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    assert start is not None, "no table"
    rows: list[list[str]] = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    header, _rule, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def code(cell: str) -> str:
    """The first inline-code span of a cell, or ``""``."""
    found = re.search(r"`([^`]+)`", cell)
    return found.group(1) if found else ""


def added_by_plugin(pytester: pytest.Pytester, args: str, pattern: str) -> set[str]:
    """What ``pytest <args>`` lists (each line's ``pattern`` match) with the plugin and not without it."""

    def listed(*extra: str) -> set[str]:
        result = pytester.runpytest(args, *extra)
        assert result.ret == 0, result.stdout.str()
        return {m.group(1) for m in re.finditer(pattern, result.stdout.str(), re.MULTILINE)}

    return listed() - listed("-p", "no:seedrepro")


@pytest.fixture
def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def test_every_option_is_documented_with_its_ini_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    monkeypatch.delenv(options.MODE_ENV_VAR, raising=False)
    rows = table(section(reference, "Options"))
    documented = {code(row["flag"]): code(row["ini"]) for row in rows}
    flags = added_by_plugin(pytester, "--help", r"^  (--[a-z][\w-]*)")
    ini_keys = added_by_plugin(pytester, "--help", r"^  ([a-z]\w*) \(\w+\):")
    assert set(documented) == flags, "docs/reference.md's option table and the registered flags differ"
    assert set(documented.values()) == ini_keys, "docs/reference.md's ini keys and the registered ones differ"
    assert set(EFFECTIVE_DEFAULT) == ini_keys, "add the new option's default to EFFECTIVE_DEFAULT"

    # Each row's ini key is its flag's twin: the name options.resolve reads both by.
    for flag, ini_key in documented.items():
        given = [flag] if ini_key in ("seedrepro_only_drifted", "seedrepro_repeat_serial") else [f"{flag}=X"]
        assert pytester.parseconfig(*given).getoption(ini_key) in (True, "X"), (flag, ini_key)

    settings = options.resolve(pytester.parseconfig())
    for row in rows:
        ini_key = code(row["ini"])
        default = EFFECTIVE_DEFAULT[ini_key](settings)
        if default is None:  # not set by default: said in words, no literal value
            assert not code(row["default"]), f"{ini_key}: documented default {row['default']}, it has none"
        else:
            assert code(row["default"]) == str(default), (
                f"{ini_key}: documented {row['default']}, is {default}"
            )


def test_every_marker_is_documented(pytester: pytest.Pytester, reference: str) -> None:
    registered = added_by_plugin(pytester, "--markers", r"^@pytest\.mark\.(\w+)")
    documented = set(re.findall(r"^### `@pytest\.mark\.(\w+)", section(reference, "Markers"), re.MULTILINE))
    assert documented == registered


def test_every_hook_is_documented_with_its_arguments(reference: str) -> None:
    manager = pytest.PytestPluginManager()
    specs: dict[str, list[str]] = {}
    for name in dir(hookspecs):
        opts = manager.parse_hookspec_opts(hookspecs, name)
        if opts is not None:
            deprecated = set(opts.get("warn_on_impl_args") or ())
            params = inspect.signature(getattr(hookspecs, name)).parameters
            specs[name] = [p for p in params if p not in deprecated]
    documented = {}
    for row in table(section(reference, "Hooks")):
        match = re.fullmatch(r"(\w+)\(([^)]*)\)", code(row["hook"]))
        assert match, row
        documented[match.group(1)] = [a.strip() for a in match.group(2).split(",") if a.strip()]
    assert documented == specs


def test_the_readme_fits_pypi() -> None:
    # PyPI renders the README without the repository: a relative link or image is broken there.
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, "the README is the landing page: the manual lives in docs/"
    relative = re.findall(r"\]\((?!https?://|#)[^)]*\)|<img [^>]*src=\"(?!https?://)[^\"]*\"", text)
    assert relative == [], "README.md links must be absolute (https://...)"
