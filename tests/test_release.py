"""What a release promises: the version, its CHANGELOG section, the licence and the metadata PyPI shows.

These read the repository's own files (pyproject.toml, CHANGELOG.md, LICENSE)
and the package as imported, so they hold on an editable install and on the
installed wheel alike (CI runs one leg on the wheel).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import pytest_seedrepro

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/pytest-seedrepro/pytest-seedrepro"
#: A released section's heading, as Keep a Changelog writes it: ``## [1.2.3] - 2026-12-03``.
RELEASED = re.compile(r"^## \[(?P<version>[^\]]+)\] - (?P<date>\S+)$")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _headings() -> list[str]:
    return [
        line
        for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    ]


def _own_distribution() -> importlib.metadata.Distribution | None:
    """The installed distribution the imported package comes from; None for a source tree on sys.path.

    An editable install's files point at nothing in site-packages, and a
    ``PYTHONPATH=src`` run imports another copy than the installed one: only a
    real install (the wheel) has metadata that describes what is imported.
    """
    try:
        dist = importlib.metadata.distribution("pytest-seedrepro")
    except importlib.metadata.PackageNotFoundError:
        return None
    imported = Path(pytest_seedrepro.__file__).resolve()
    installed = Path(str(dist.locate_file("pytest_seedrepro/__init__.py"))).resolve()
    return dist if installed == imported else None


def test_the_changelog_s_first_released_section_is_this_version_with_an_iso_date() -> None:
    headings = _headings()
    assert headings[0] == "## [Unreleased]", "the CHANGELOG starts with an Unreleased section"
    released = [match for match in map(RELEASED.match, headings[1:]) if match]
    assert released, f"no released section (## [X.Y.Z] - YYYY-MM-DD) in {headings}"
    assert len(released) == len(headings) - 1, f"a heading is neither Unreleased nor a release: {headings}"
    first = released[0]
    datetime.date.fromisoformat(first["date"])  # raises on anything but YYYY-MM-DD
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", first["date"])
    version = Version(pytest_seedrepro.__version__)
    if version.is_devrelease:
        # Between releases: the next version is under Unreleased, the first released one is older.
        assert Version(first["version"]) < version
    else:
        assert first["version"] == pytest_seedrepro.__version__


def test_the_changelog_links_each_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    newest = RELEASED.match(_headings()[1])
    assert newest is not None
    version = newest["version"]
    assert f"\n[Unreleased]: {REPOSITORY}/compare/v{version}...HEAD\n" in text
    for match in filter(None, map(RELEASED.match, _headings()[1:])):
        assert f"\n[{match['version']}]: {REPOSITORY}/" in text, f"no link for [{match['version']}]"


def test_the_installed_metadata_has_the_package_s_version_and_licence() -> None:
    dist = _own_distribution()
    if dist is None:
        # .ci/run's wheel leg sets SEEDREPRO_INSTALLED_WHEEL: there, the suite must run on the wheel.
        if os.environ.get("SEEDREPRO_INSTALLED_WHEEL"):
            pytest.fail(
                f"SEEDREPRO_INSTALLED_WHEEL is set, but pytest_seedrepro comes from {pytest_seedrepro.__file__}"
            )
        pytest.skip("the imported package is not an installed wheel (editable or PYTHONPATH)")
    assert dist.version == pytest_seedrepro.__version__
    assert dist.metadata["License-Expression"] == "MIT"
    files = [str(path) for path in dist.files or []]
    assert any(path.endswith(".dist-info/licenses/LICENSE") for path in files), files
    assert not any(c.startswith("License ::") for c in dist.metadata.get_all("Classifier") or [])


def test_the_licence_is_mit_declared_once() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n")
    assert "Copyright (c) 2026 pytest-seedrepro developers" in licence
    # PEP 639: a licence expression and a License :: classifier together are rejected by PyPI.
    assert [c for c in project["classifiers"] if c.startswith("License ::")] == []


def test_the_metadata_pypi_shows() -> None:
    project = _pyproject()["project"]
    classifiers = set(project["classifiers"])
    for wanted in (
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Topic :: Software Development :: Testing",
        "Framework :: Pytest",
        "Programming Language :: Python :: 3 :: Only",
    ):
        assert wanted in classifiers
    assert set(project["urls"]) >= {"Homepage", "Documentation", "Changelog", "Issues", "Source"}
    assert {"pytest", "openai", "llm", "testing"} <= set(project["keywords"])
    # The Python classifiers are the versions CI runs, from the declared floor up.
    assert project["requires-python"] == ">=3.11"
    pythons = sorted(
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert pythons[0] == "3.11"


def test_vcrpy_is_bounded_and_the_installed_one_is_in_the_bound() -> None:
    from pytest_seedrepro import vcrpy_check

    (requirement,) = [
        Requirement(d) for d in _pyproject()["project"]["dependencies"] if d.startswith("vcrpy")
    ]
    assert any(spec.operator == "<" for spec in requirement.specifier), "vcrpy needs an upper bound"
    assert importlib.metadata.version("vcrpy") in requirement.specifier
    # The one line an unsupported vcrpy gets names the declared range, whatever it becomes.
    bounds = sorted(requirement.specifier, key=lambda spec: spec.operator, reverse=True)
    assert vcrpy_check.SUPPORTED_RANGE == "vcrpy " + ", ".join(f"{s.operator} {s.version}" for s in bounds)
