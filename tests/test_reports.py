"""What the user is told: the summary, the JSON and HTML reports, failure reports and the header.

Each test runs the real plugin in a real pytest run (serially and under
pytest-xdist where the data has to travel from the workers) against the
project's test server.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
import yaml

from llmserver import LLMServer

LIVE = "--seedrepro-mode=live"
XDIST = pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])

SWALLOWED_CLIENT_ERROR = """
import openai

def test_a(seeded_llm):
    try:
        seeded_llm.complete("hello", max_tokens=-1)  # the server answers 400, every time
    except openai.BadRequestError:
        pass  # the app falls back to a canned answer

def test_b(seeded_llm):
    seeded_llm.complete("an ordinary call")
"""
#: The test server's answer to ``max_tokens=-1``.
BAD_MAX_TOKENS = "'max_tokens' must be a non-negative integer."


class Sections(HTMLParser):
    """The text of each ``<table class="...">`` of a page, by class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self.tables[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        rows = self.tables.get(self._table or "", [])
        if rows and rows[-1]:
            rows[-1][-1] += data


@XDIST
def test_a_client_error_the_app_swallows_is_counted_in_every_report(
    suite: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    suite.makepyfile(test_it=SWALLOWED_CLIENT_ERROR)
    result = suite.runpytest(
        LIVE, "--snapshot-update", "--seedrepro-report=r.json", "--seedrepro-html=r.html", *workers
    )
    result.assert_outcomes(passed=2)  # the app handled it: the test passes, and the reports say so
    result.stdout.fnmatch_lines([f"client error: test_it.py::test_a call 0: 400 {BAD_MAX_TOKENS}"])
    assert "client error: test_it.py::test_b" not in result.stdout.str()
    report = json.loads((suite.path / "r.json").read_text())
    assert report["client_errors"] == [
        {"test": "test_it.py::test_a", "call": 0, "status": 400, "message": BAD_MAX_TOKENS}
    ]
    page = Sections()
    page.feed((suite.path / "r.html").read_text())
    assert page.tables["client-errors"][1:] == [["test_it.py::test_a", "0", "400", BAD_MAX_TOKENS]]


def test_a_client_error_is_listed_by_its_message_first_line_also_in_replay(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        test_it=SWALLOWED_CLIENT_ERROR.split("def test_b")[0].replace("max_tokens=-1", "max_tokens=5")
    )
    message = "Unsupported parameter: 'max_tokens' is not supported with this model."
    llm_server.fail_next(status=400, message=f"{message}\nUse 'max_completion_tokens' instead.")
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    llm_server.stop()
    monkeypatch.setenv("OPENAI_API_KEY", "replay-never-sends-it")
    result = suite.runpytest("--seedrepro-report=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"client error: test_it.py::test_a call 0: 400 {message}"])
    assert json.loads((suite.path / "r.json").read_text())["client_errors"][0]["message"] == message


def test_a_run_without_client_errors_reports_none(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = suite.runpytest(
        LIVE, "--snapshot-update", "--seedrepro-report=r.json", "--seedrepro-html=r.html"
    )
    result.assert_outcomes(passed=1)
    assert "client error" not in result.stdout.str()
    assert json.loads((suite.path / "r.json").read_text())["client_errors"] == []
    assert "client-errors" not in (suite.path / "r.html").read_text()


@XDIST
@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("html-page", "the answer is not the API's JSON (content-type text/html*"),
        ("error-object", "the answer is an error object, not a completion: quota exceeded"),
    ],
)
def test_a_broken_answer_the_app_tripped_over_is_named_in_its_failure(
    suite: pytest.Pytester, llm_server: LLMServer, workers: tuple[str, ...], kind: str, cause: str
) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            try:
                text = seeded_llm.complete("hello")
            except Exception:
                text = ""  # the app's fallback for whatever the SDK made of the answer
            assert text, "the app got no answer"
        """
    )
    if kind == "html-page":
        llm_server.serve_next_raw("<html><body>Sign in to the wifi</body></html>", content_type="text/html")
    else:
        llm_server.serve_next_raw('{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}')
    result = suite.runpytest(LIVE, *workers)
    result.assert_outcomes(failed=1)
    # The app's own assertion is still there, and the broken call is named beside it.
    result.stdout.fnmatch_lines(["*AssertionError: the app got no answer*"])
    result.stdout.fnmatch_lines([f"seedrepro: test_it.py::test_a: call 0: {cause}"])
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.parametrize("kind", ["html-page", "error-object"])
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_complete_on_a_broken_answer_fails_in_one_line_without_a_traceback_from_the_plugin(
    suite: pytest.Pytester, llm_server: LLMServer, kind: str, flavour: str
) -> None:
    body = (
        "import pytest\n\n@pytest.mark.asyncio\nasync def test_a(seeded_llm):\n"
        "    await seeded_llm.acomplete('hello')\n"
        if flavour == "async"
        else "def test_a(seeded_llm):\n    seeded_llm.complete('hello')\n"
    )
    suite.makepyfile(test_it=body)
    if kind == "html-page":
        llm_server.serve_next_raw("<html><body>Sign in to the wifi</body></html>", content_type="text/html")
    else:
        llm_server.serve_next_raw('{"error": {"message": "quota exceeded", "type": "insufficient_quota"}}')
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["seedrepro: test_it.py::test_a: call 0: the answer *"])
    output = result.stdout.str()
    assert "fixture.py" not in output and "AttributeError" not in output and "TypeError" not in output


def test_an_app_error_without_a_broken_call_gets_no_seedrepro_section(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    assert not seeded_llm.complete('x'), 'app bug'\n")
    result = suite.runpytest(LIVE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: app bug*"])
    assert "seedrepro: test_it.py::test_a" not in result.stdout.str()


INI_CASES = {
    "repeat": (
        "seedrepro_repeat = 5",
        "seedrepro: ini seedrepro_repeat=5 ignored: it needs --seedrepro-mode=live",
    ),
    "only-drifted": (
        "seedrepro_only_drifted = true",
        "seedrepro: ini seedrepro_only_drifted=true ignored: it needs --seedrepro-mode=rerecord (or live) "
        "and --snapshot-update",
    ),
}


@pytest.mark.parametrize("key", sorted(INI_CASES))
def test_an_ini_value_that_does_not_apply_to_this_run_is_ignored_and_the_header_says_so(
    suite: pytest.Pytester, llm_server: LLMServer, key: str
) -> None:
    ini, header = INI_CASES[key]
    suite.makeini(f"[pytest]\nseedrepro_base_url = {llm_server.base_url}\n{ini}\n")
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = suite.runpytest("--seedrepro-mode=record", "--snapshot-update")
    result.assert_outcomes(passed=1)  # a usage error before
    result.stdout.fnmatch_lines(["seedrepro: mode=record, *", header])
    result = suite.runpytest()  # replay
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([header])


def test_an_ini_value_that_applies_is_used_and_not_reported_as_ignored(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.makeini(f"[pytest]\nseedrepro_base_url = {llm_server.base_url}\nseedrepro_repeat = 3\n")
    result = suite.runpytest(LIVE)
    result.assert_outcomes(passed=1)
    assert "ignored: it needs" not in result.stdout.str()
    assert len(llm_server.requests) == 3  # the ini's repeat applied in live
    result.stdout.fnmatch_lines(["repeat: each call sent 3 times*"])
    suite.makeini(f"[pytest]\nseedrepro_base_url = {llm_server.base_url}\nseedrepro_only_drifted = true\n")
    result = suite.runpytest(LIVE, "--snapshot-update")
    result.assert_outcomes(deselected=1)  # the ini's only-drifted applied: nothing drifted
    assert "ignored: it needs" not in result.stdout.str()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--seedrepro-repeat=5", "--seedrepro-repeat sends every call 5 times to the API: use it with*"),
        (
            "--seedrepro-only-drifted",
            "--seedrepro-only-drifted refreshes the tests that drifted: use it with*",
        ),
    ],
)
def test_the_flag_that_does_not_apply_stays_a_usage_error(
    suite: pytest.Pytester, flag: str, message: str
) -> None:
    suite.makepyfile("def test_a():\n    pass\n")
    result = suite.runpytest(flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


@pytest.mark.parametrize("mode", ["live", "rerecord"])
def test_the_regression_message_names_the_mode_in_use(
    suite: pytest.Pytester, llm_server: LLMServer, mode: str
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest(f"--seedrepro-mode={mode}", "--snapshot-update").assert_outcomes(passed=1)
    llm_server.variant = "regressed"
    result = suite.runpytest(f"--seedrepro-mode={mode}")
    result.assert_outcomes(failed=1)
    command = f"pytest --seedrepro-mode={mode} --snapshot-update 'test_it.py::test_a'"
    result.stdout.fnmatch_lines([f"*If the new output is right: {command}"])
    # The command it names accepts the new output, and then the test passes.
    suite.runpytest(*command.replace("'", "").split()[1:]).assert_outcomes(passed=1)
    suite.runpytest(f"--seedrepro-mode={mode}").assert_outcomes(passed=1)


@XDIST
def test_a_changed_response_model_under_the_same_fingerprint_and_output_is_listed(
    suite: pytest.Pytester, llm_server: LLMServer, workers: tuple[str, ...]
) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    snapshot = next((suite.path / "__snapshots__").rglob("*.llm.yaml"))
    assert yaml.safe_load(snapshot.read_text())["calls"][0]["response_model"] == "gpt-4o-mini"
    result = suite.runpytest(LIVE, "--seedrepro-report=r.json", *workers)
    result.assert_outcomes(passed=1)
    assert "model changed" not in result.stdout.str()  # nothing changed yet
    assert json.loads((suite.path / "r.json").read_text())["model_changes"] == []

    llm_server.model_override = "gpt-4o-mini-2024-07-18"  # the alias now points at a dated model
    result = suite.runpytest(LIVE, "--seedrepro-report=r.json", *workers)
    result.assert_outcomes(passed=1)  # same fingerprint, same output: still a pass
    result.stdout.fnmatch_lines(
        ["model changed: test_it.py::test_a call 0: gpt-4o-mini -> gpt-4o-mini-2024-07-18"]
    )
    assert json.loads((suite.path / "r.json").read_text())["model_changes"] == [
        {"test": "test_it.py::test_a", "call": 0, "old": "gpt-4o-mini", "new": "gpt-4o-mini-2024-07-18"}
    ]


def test_only_drifted_without_the_cache_says_there_is_no_cache_to_ask(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    suite.runpytest(LIVE, "--snapshot-update").assert_outcomes(passed=1)
    result = suite.runpytest(LIVE, "--snapshot-update", "--seedrepro-only-drifted", "-p", "no:cacheprovider")
    result.assert_outcomes(deselected=1)
    out = result.stdout.str()
    assert "no test drifted" not in out
    result.stdout.fnmatch_lines(
        [
            "seedrepro: --seedrepro-only-drifted has no cache to ask (-p no:cacheprovider turns it off): "
            "no test selected"
        ]
    )


BLOCK_SNAPSHOTS = """
import pytest

@pytest.fixture(autouse=True)
def block_the_snapshot_directory(request):
    yield
    # After the test read that it has no snapshot yet, before syrupy writes it at
    # the end of the session: a file now stands where the directory should be.
    (request.config.rootpath / "__snapshots__").write_text("my notes\\n")
"""


@XDIST
def test_a_snapshot_that_cannot_be_written_fails_the_run_and_is_named_on_the_controller(
    suite: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    suite.makeconftest(BLOCK_SNAPSHOTS)
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = suite.runpytest(LIVE, "--snapshot-update", *workers)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            f"seedrepro: cannot write the snapshot {suite.path}/__snapshots__/test_it/test_a.llm.yaml: "
            f"a file stands where a directory should be: {suite.path}/__snapshots__ (move or delete it)"
        ]
    )
    out = result.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert (suite.path / "__snapshots__").read_bytes() == b"my notes\n"


CRASH_AFTER_SYRUPY_WROTE = (
    BLOCK_SNAPSHOTS
    + """

class Crash:
    def pytest_sessionfinish(self, session):
        # Registered last, so it runs after syrupy's write (tryfirst) and before
        # the plugin's summary: the run ends in an INTERNALERROR there.
        raise RuntimeError("a plugin broke at the end of the session")

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.pluginmanager.register(Crash(), "crash")
"""
)


def test_a_run_that_broke_at_its_end_leaves_nothing_to_the_next_run_in_the_process(
    suite: pytest.Pytester,
) -> None:
    """pytester runs many sessions in one process: a file one could not write is not the next one's."""
    suite.makeconftest(CRASH_AFTER_SYRUPY_WROTE)
    suite.makepyfile(test_it="def test_a(seeded_llm):\n    seeded_llm.complete('x')\n")
    first = suite.runpytest_inprocess(LIVE, "--snapshot-update")
    assert first.ret == pytest.ExitCode.INTERNAL_ERROR
    (suite.path / "__snapshots__").unlink()
    (suite.path / "conftest.py").unlink()
    second = suite.runpytest_inprocess(LIVE, "--snapshot-update")
    second.assert_outcomes(passed=1)
    assert "cannot write" not in second.stdout.str()
    assert second.ret == pytest.ExitCode.OK


def test_the_judgement_notes_a_model_that_alone_changed() -> None:
    from pytest_seedrepro import judgement

    def entry(model: str, fingerprint: str = "fp_1", output: str = "same") -> dict[str, object]:
        return {"system_fingerprint": fingerprint, "response_model": model, "request": {}, "output": output}

    alone = judgement.judge([entry("gpt-4o-mini")], [entry("gpt-4o-mini-2024-07-18")])
    assert alone.divergence is None and not alone.noted
    assert [(c.index, c.old_model, c.new_model) for c in alone.model_changes] == [
        (0, "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    ]
    # With the fingerprint: the fingerprint change carries it, listed once.
    with_fingerprint = judgement.judge([entry("a")], [entry("b", fingerprint="fp_2")])
    assert not with_fingerprint.model_changes and with_fingerprint.noted[0].new_model == "b"
    # Unchanged, or unknown in an older snapshot: nothing to say.
    assert not judgement.judge([entry("a")], [entry("a")]).model_changes
    assert not judgement.judge([{**entry("a"), "response_model": None}], [entry("b")]).model_changes
