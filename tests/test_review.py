"""Pending changes and the ``seedrepro`` command (DESIGN, "Reviewing changes").

Real pytest runs of a suite against the project's test server keep pending
changes; the command runs in-process through ``review.main`` (and once as
``python -m pytest_seedrepro``), then a replay run with the server stopped
proves what was accepted is what the run saw.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmserver import LLMServer
from pytest_seedrepro import review
from written import files_of

pytestmark = pytest.mark.filterwarnings("default::pytest_seedrepro.SeedReproFingerprintWarning")

RECORD = ("--seedrepro-mode=record", "--snapshot-update", "-p", "no:cacheprovider")
CASSETTE = "cassettes/test_it/test_a.yaml"
SNAPSHOT = "__snapshots__/test_it/test_a.llm.yaml"

ONE_CALL = """
def test_a(seeded_llm):
    print("OUTPUT:", repr(seeded_llm.complete("tell me a story")))
"""


def seedrepro(suite: pytest.Pytester, *argv: str, answers: str = "") -> tuple[int, str, str]:
    """``seedrepro ARGV`` run in-process from the suite's directory: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = review.main(list(argv), cwd=suite.path, stdin=io.StringIO(answers), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def output_of(result: pytest.RunResult) -> str:
    """The answer the test printed (run with -s)."""
    return next(line.split("OUTPUT: ", 1)[1] for line in result.outlines if "OUTPUT: " in line)


def recorded(suite: pytest.Pytester, server: LLMServer) -> dict[str, bytes]:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    return files_of(suite.path)


def test_a_drift_in_rerecord_is_accepted_with_the_server_stopped_and_replay_passes_with_its_answer(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    before = recorded(suite, llm_server)
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "a new backend"
    result = suite.runpytest("--seedrepro-mode=rerecord", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    new_output = output_of(result)
    # The seedrepro section's last line.
    section = result.outlines[result.outlines.index("fingerprint changes:") :]
    assert section[section.index("1 change(s) pending: seedrepro review") + 1].startswith("-----")
    assert files_of(suite.path) == before  # the run itself wrote nothing
    status, out, err = seedrepro(suite, "pending")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "test_it.py::test_a  drift-skipped  fp_test_1/gpt-4o-mini -> fp_test_2/gpt-4o-mini"
    ]
    llm_server.stop()
    os.environ.pop("OPENAI_API_KEY")  # accepting needs no key
    status, out, err = seedrepro(suite, "accept")
    assert (status, out, err) == (0, "accepted: test_it.py::test_a\n", "")
    assert files_of(suite.path) != before
    assert "fp_test_2" in (suite.path / SNAPSHOT).read_text()
    assert seedrepro(suite, "pending")[1] == "no pending changes\n"
    replayed = suite.runpytest("-s", "-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)
    assert output_of(replayed) == new_output


def test_a_regression_in_live_is_reviewed_with_a_piped_and_replay_passes(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    before = recorded(suite, llm_server)
    llm_server.variant = "regressed"
    sent = len(llm_server.requests)
    result = suite.runpytest("--seedrepro-mode=live", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert len(llm_server.requests) == sent + 1  # live still sends every request, recording or not
    assert files_of(suite.path) == before
    new_output = output_of(result)
    result.stdout.fnmatch_lines(["1 change(s) pending: seedrepro review"])
    status, out, err = seedrepro(suite, "review", answers="A\n")
    assert (status, err) == (0, "")
    new_line = eval(new_output).splitlines()[0]  # the repr the test printed
    assert any(line.startswith("+") and new_line in line for line in out.splitlines())  # the diff
    assert "accepted: test_it.py::test_a" in out
    llm_server.stop()
    replayed = suite.runpytest("-s", "-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)
    assert output_of(replayed) == new_output


def test_reject_keeps_the_files_and_replay_with_changes_pending_uses_the_committed_files(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    before = recorded(suite, llm_server)
    old_output = output_of(suite.runpytest("-s", "-p", "no:cacheprovider"))
    llm_server.variant = "regressed"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    llm_server.stop()
    replayed = suite.runpytest("-s", "-p", "no:cacheprovider")  # a change is pending
    replayed.assert_outcomes(passed=1)
    assert output_of(replayed) == old_output
    assert "change(s) pending" not in replayed.stdout.str()
    assert seedrepro(suite, "pending")[1].startswith("test_it.py::test_a  regression  ")
    assert seedrepro(suite, "reject", "test_it.py") == (0, "rejected: test_it.py::test_a\n", "")
    assert files_of(suite.path) == before
    assert seedrepro(suite, "pending")[1] == "no pending changes\n"


def test_a_passing_run_forgets_the_pending_change_and_a_newer_run_replaces_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded(suite, llm_server)
    llm_server.variant = "regressed"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    llm_server.fingerprint = "fp_test_2"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(skipped=1)
    assert seedrepro(suite, "pending")[1].split("  ")[1] == "drift-skipped"
    llm_server.fingerprint, llm_server.variant = "fp_test_1", ""
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert seedrepro(suite, "pending")[1] == "no pending changes\n"


def test_a_new_test_accepted_writes_both_files(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    assert files_of(suite.path) == {}
    assert seedrepro(suite, "pending")[1].startswith("test_it.py::test_a  new  -/- -> fp_test_1/")
    assert seedrepro(suite, "accept", "test_it.py::test_a")[0] == 0
    assert sorted(files_of(suite.path)) == sorted([CASSETTE, SNAPSHOT])
    llm_server.stop()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_draws_test_is_accepted_as_a_whole(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    suite.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.draws(3)
        def test_drawn(seeded_llm):
            print("OUTPUT:", seeded_llm.draw, repr(seeded_llm.complete("tell me a story")))
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    llm_server.variant = "regressed"
    result = suite.runpytest("--seedrepro-mode=rerecord", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    outputs = sorted(line for line in result.outlines if "OUTPUT: " in line)
    assert len(outputs) == 3
    assert seedrepro(suite, "accept", "test_it.py::test_drawn") == (
        0,
        "accepted: test_it.py::test_drawn\n",
        "",
    )
    llm_server.stop()
    replayed = suite.runpytest("-s", "-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)
    assert sorted(line for line in replayed.outlines if "OUTPUT: " in line) == outputs


def test_a_draws_test_below_its_gate_is_kept_as_kind_draws(
    suite: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.makepyfile(
        test_it="""
        import os
        import pytest

        @pytest.mark.draws(2)
        def test_drawn(seeded_llm):
            seeded_llm.complete("tell me a story")
            assert os.environ.get("FAIL_THE_DRAWS") != "1"
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=1)
    before = files_of(suite.path)
    llm_server.variant = "regressed"
    monkeypatch.setenv("FAIL_THE_DRAWS", "1")
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    assert files_of(suite.path) == before
    assert seedrepro(suite, "pending")[1].split("  ")[:2] == ["test_it.py::test_drawn", "draws"]


def test_accept_refuses_when_the_snapshot_changed_since_the_run(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded(suite, llm_server)
    llm_server.variant = "regressed"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    snapshot = suite.path / SNAPSHOT
    snapshot.write_text(snapshot.read_text() + "# edited by hand\n")
    edited = files_of(suite.path)
    status, out, err = seedrepro(suite, "accept")
    assert (status, out) == (2, "")
    assert err == (
        f"seedrepro: test_it.py::test_a: the snapshot {SNAPSHOT} changed since the run: not accepted; "
        "run the test again to review its change against it\n"
    )
    assert files_of(suite.path) == edited


def test_an_accept_that_cannot_write_the_snapshot_writes_neither_file(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    (suite.path / "__snapshots__").write_text("a file where the snapshots' directory should be\n")
    status, out, err = seedrepro(suite, "accept")
    assert (status, out) == (2, "")
    assert err.startswith("seedrepro: test_it.py::test_a: not accepted: cannot write the snapshot ")
    assert err.count("\n") == 1
    assert not (suite.path / CASSETTE).exists()
    assert seedrepro(suite, "pending")[1].startswith("test_it.py::test_a  new  ")


def test_bad_input_is_one_line_and_exit_2(suite: pytest.Pytester, llm_server: LLMServer) -> None:
    # Nothing was ever kept: nothing pending is no mistake, a node id that names nothing is.
    assert seedrepro(suite, "pending") == (0, "no pending changes\n", "")
    assert seedrepro(suite, "review") == (0, "no pending changes\n", "")
    assert seedrepro(suite, "accept", "test_it.py::test_a") == (
        2,
        "",
        "seedrepro: no pending change for test_it.py::test_a (`seedrepro pending` lists them)\n",
    )
    recorded(suite, llm_server)
    llm_server.variant = "regressed"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    assert seedrepro(suite, "accept", "test_it.py::test_nothing") == (
        2,
        "",
        "seedrepro: no pending change for test_it.py::test_nothing (`seedrepro pending` lists them)\n",
    )
    (suite.path / "test_it.py").rename(suite.path / "test_moved.py")
    status, out, err = seedrepro(suite, "accept")
    assert (status, out) == (2, "")
    assert err.startswith("seedrepro: test_it.py::test_a: its test file test_it.py is gone since the run")
    (suite.path / ".pytest_cache/seedrepro/pending/broken.json").write_text('{"nodeid": 1}')
    status, out, err = seedrepro(suite, "pending")
    assert (status, out) == (
        2,
        "test_it.py::test_a  regression  fp_test_1/gpt-4o-mini -> fp_test_1/gpt-4o-mini\n",
    )
    assert err.startswith("seedrepro: cannot read the pending change ") and err.count("\n") == 1
    status, out, err = seedrepro(suite, "frobnicate")
    assert status == 2 and err.count("\n") == 1 and err.startswith("seedrepro: ")


def test_python_m_pytest_seedrepro_accepts_and_clears_the_drifted_list(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=ONE_CALL)
    suite.runpytest("--seedrepro-mode=record", "--snapshot-update").assert_outcomes(passed=1)
    llm_server.fingerprint, llm_server.variant = "fp_test_2", "a new backend"
    suite.runpytest("--seedrepro-mode=rerecord").assert_outcomes(skipped=1)
    drifted = suite.path / ".pytest_cache" / "v" / "seedrepro" / "drifted"
    assert json.loads(drifted.read_text()) == ["test_it.py::test_a"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest_seedrepro", "accept", "test_it.py::test_a"],
        cwd=suite.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "accepted: test_it.py::test_a\n", "")
    assert json.loads(drifted.read_text()) == []
    llm_server.stop()
    suite.runpytest().assert_outcomes(passed=1)


def test_the_store_is_ignored_by_git_also_without_pytests_cache(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded(suite, llm_server)
    llm_server.variant = "regressed"
    suite.runpytest("--seedrepro-mode=rerecord", "-p", "no:cacheprovider").assert_outcomes(failed=1)
    cache = suite.path / ".pytest_cache"
    assert "*" in (cache / ".gitignore").read_text().splitlines()
    assert len(list((cache / "seedrepro" / "pending").glob("*.json"))) == 1


def test_under_xdist_the_controller_counts_the_pending_changes(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(
        test_it="""
        def test_a(seeded_llm):
            seeded_llm.complete("tell me a story")

        def test_b(seeded_llm):
            seeded_llm.complete("tell me another story")
        """
    )
    suite.runpytest(*RECORD).assert_outcomes(passed=2)
    llm_server.variant = "regressed"
    result = suite.runpytest("--seedrepro-mode=rerecord", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["2 change(s) pending: seedrepro review"])
    assert len(seedrepro(suite, "pending")[1].splitlines()) == 2


def test_the_html_report_shows_the_accept_command_on_each_changed_row(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded(suite, llm_server)
    llm_server.variant = "regressed"
    suite.runpytest(
        "--seedrepro-mode=rerecord", "--seedrepro-html=report.html", "-p", "no:cacheprovider"
    ).assert_outcomes(failed=1)
    page = Path(suite.path / "report.html").read_text()
    assert "seedrepro accept test_it.py::test_a" in page


PARAMETRIZED = """
import pytest

@pytest.mark.parametrize("topic", ["cats", "dogs"])
def test_p(seeded_llm, topic):
    seeded_llm.complete(f"tell me about {topic}")

def test_q(seeded_llm):
    seeded_llm.complete("tell me a story")
"""


def test_review_reads_one_answer_a_line_and_end_of_input_skips_the_rest(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=PARAMETRIZED)
    suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider").assert_outcomes(failed=3)
    status, out, err = seedrepro(suite, "review", answers="x\nR\ns\n")
    assert (status, err) == (0, "")
    assert "answer a, r or s, not 'x'" in out
    assert "rejected: test_it.py::test_p[cats]" in out
    assert "skipped: test_it.py::test_p[dogs]" in out
    assert out.rstrip().endswith("end of input: the rest is skipped")
    assert [line.split("  ")[0] for line in seedrepro(suite, "pending")[1].splitlines()] == [
        "test_it.py::test_p[dogs]",
        "test_it.py::test_q",
    ]
    assert files_of(suite.path) == {}


def test_a_test_without_its_parameters_or_a_file_selects_every_change_below_it(
    suite: pytest.Pytester, llm_server: LLMServer
) -> None:
    suite.makepyfile(test_it=PARAMETRIZED)
    suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider").assert_outcomes(failed=3)
    assert seedrepro(suite, "reject", "test_it.py::test_p") == (
        0,
        "rejected: test_it.py::test_p[cats]\nrejected: test_it.py::test_p[dogs]\n",
        "",
    )
    suite.runpytest("--seedrepro-mode=live", "-p", "no:cacheprovider").assert_outcomes(failed=3)
    assert seedrepro(suite, "accept", "test_it.py")[1].count("accepted: ") == 3
    llm_server.stop()
    suite.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_the_console_script_is_the_commands_main() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["seedrepro"] == "pytest_seedrepro.review:main"


def test_the_command_imports_nothing_heavy() -> None:
    code = (
        "import sys, pytest_seedrepro.review; "
        "print(sorted(m for m in ('openai', 'vcr', 'syrupy', 'httpx', 'yaml') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout == "[]\n"


def test_the_installed_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "seedrepro"
    assert script.exists(), f"{script}: the package's console script is not installed"
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run(
        [str(script), "pending"], cwd=tmp_path / "project", capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "no pending changes\n", "")
    done = subprocess.run(
        [str(script), "accept", "test_x.py::test_y"],
        cwd=tmp_path / "project",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("seedrepro: ")
