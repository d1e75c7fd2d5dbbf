"""--seedrepro-html: the drift report as a person sees it, in a real headless Chromium.

The page is loaded by Debian's ``chromium`` (installed by .ci/run); the tests
read the DOM Chromium built after running the page's script, and take a
screenshot. Without Chromium they skip with the install hint (fail under CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from llmserver import LLMServer

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium not found: apt-get install -y chromium"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(message + " (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(message)
    return found


def browse(page: Path, tmp_path: Path, *, fragment: str = "", screenshot: Path | None = None) -> str:
    """The DOM after the page's script ran (or a screenshot), from a real headless Chromium."""
    profile = tmp_path / f"chromium-profile-{os.urandom(4).hex()}"
    action = [f"--screenshot={screenshot}", "--window-size=1280,900"] if screenshot else ["--dump-dom"]
    completed = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, page.as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


class Rows(HTMLParser):
    """The report's test rows as Chromium left them: verdict, hidden or not, and the diff marks."""

    def __init__(self) -> None:
        super().__init__()
        self.tests: list[dict[str, object]] = []
        self.details: list[dict[str, object]] = []
        self.marks: dict[str, int] = {"del": 0, "ins": 0}
        self.shown = ""
        self._in_shown = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "tr" and attributes.get("class") in ("test", "detail"):
            row = {"verdict": attributes.get("data-verdict"), "hidden": "hidden" in attributes}
            (self.tests if attributes["class"] == "test" else self.details).append(row)
        if tag in self.marks:
            self.marks[tag] += 1
        self._in_shown = attributes.get("id") == "shown"

    def handle_data(self, data: str) -> None:
        if self._in_shown:
            self.shown += data

    def handle_endtag(self, tag: str) -> None:
        self._in_shown = False


def parse(dom: str) -> Rows:
    rows = Rows()
    rows.feed(dom)
    return rows


SUITE = """
import pytest

def test_steady(seeded_llm):
    seeded_llm.complete("steady")

def test_regressed(seeded_llm):
    seeded_llm.complete("regressed")

def test_drifted(seeded_llm):
    seeded_llm.complete("drifted")

@pytest.mark.on_fingerprint_change("warn")
def test_drifted_warn(seeded_llm):
    seeded_llm.complete("drifted too")
"""


def edit_snapshot(path: Path, *, output: str, fingerprint: str | None = None) -> None:
    data = yaml.safe_load(path.read_text())
    data["calls"][0]["output"] = output
    if fingerprint:
        data["calls"][0]["system_fingerprint"] = fingerprint
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def report(suite: pytest.Pytester, llm_server: LLMServer) -> Path:
    """A replay run with one test passing, one regressed and two drifted, and its HTML report."""
    suite.makepyfile(test_it=SUITE)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=4)
    snapshots = suite.path / "__snapshots__" / "test_it"
    edit_snapshot(snapshots / "test_regressed.llm.yaml", output="what the snapshot said before")
    edit_snapshot(
        snapshots / "test_drifted.llm.yaml", output="an older backend said this", fingerprint="fp_old"
    )
    edit_snapshot(snapshots / "test_drifted_warn.llm.yaml", output="older words here", fingerprint="fp_old")
    result = suite.runpytest(
        "--seedrepro-html=out/report.html", "-W", "default::pytest_seedrepro.SeedReproFingerprintWarning"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1, warnings=1)
    page = suite.path / "out" / "report.html"
    assert page.is_file()
    return page


def test_the_report_shows_every_test_with_its_verdict_and_the_word_diff(report: Path, tmp_path: Path) -> None:
    dom = browse(report, tmp_path)
    assert "<b>calls</b> 4 replayed, 0 live" in dom and "fp_test_1 (4)" in dom
    rows = parse(dom)
    assert sorted(str(r["verdict"]) for r in rows.tests) == [
        "drift-skipped",
        "drift-warned",
        "passed",
        "regression",
    ]
    assert not any(r["hidden"] for r in rows.tests)
    assert sorted(str(r["verdict"]) for r in rows.details) == ["drift-skipped", "drift-warned", "regression"]
    assert rows.marks["del"] >= 3 and rows.marks["ins"] >= 3  # old words struck, new words marked
    assert rows.shown == "4"  # the script ran and counted the rows it shows
    text = report.read_text()
    assert "fp_old &rarr; fp_test_1" in text and "http" not in text.replace(
        "http-equiv", ""
    )  # no external asset


def test_the_filter_shows_only_one_verdict(report: Path, tmp_path: Path) -> None:
    rows = parse(browse(report, tmp_path, fragment="#regression"))
    visible = [str(r["verdict"]) for r in rows.tests if not r["hidden"]]
    assert visible == ["regression"]
    assert rows.shown == "1"


def test_a_screenshot_of_the_report(report: Path, tmp_path: Path) -> None:
    picture = tmp_path / "report.png"
    browse(report, tmp_path, screenshot=picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    if os.environ.get("SEEDREPRO_SCREENSHOT"):  # refresh docs/report.png by hand
        shutil.copy(picture, os.environ["SEEDREPRO_SCREENSHOT"])


def test_the_report_is_written_once_under_xdist(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_it="import pytest\n@pytest.mark.parametrize('n', range(4))\ndef test_a(seeded_llm, n):\n    seeded_llm.complete(f'x{n}')\n"
    )
    suite.runpytest(
        "--seedrepro-mode=live", "--snapshot-update", "-n", "2", "--seedrepro-html=r.html"
    ).assert_outcomes(passed=4)
    page = (suite.path / "r.html").read_text()
    assert page.count('<tr class="test"') == 4
