"""The private names the plugin uses in vcrpy and pytest are there, with the shape it uses.

vcrpy's are checked at first use (``vcrpy_check``, with ``sdk.load``); a vcrpy
whose internals moved is one line naming them. pytest's two privates
(``_pytest.runner.runtestprotocol`` for draws, ``item._request`` for a test
whose set-up failed) are asserted here, on every pytest CI runs (8.2.0 in the
floors leg, the newest in the others).
"""

from __future__ import annotations

import inspect

import pytest


def test_the_installed_vcrpy_has_every_internal_the_plugin_uses() -> None:
    from pytest_seedrepro import vcrpy_check

    # CI runs this on the floor (vcrpy 8.2.1) and on the newest vcrpy within the bound.
    assert vcrpy_check._moved() == []


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        ("del vcr.cassette.Cassette._load", "Cassette._load"),
        # Another shape: append taking one interaction instead of (request, response).
        ("vcr.cassette.Cassette.append = lambda self, interaction: None", "Cassette.append"),
        ("del vcr.patch.CassettePatcherBuilder._httpx", "CassettePatcherBuilder._httpx"),
    ],
)
def test_a_vcrpy_whose_internals_moved_is_one_line_naming_them(
    pytester: pytest.Pytester, breakage: str, named: str
) -> None:
    # A subprocess: the inner conftest breaks vcrpy for that run only, as a new release might.
    pytester.makeconftest(f"import vcr.cassette, vcr.patch\n\n{breakage}\n")
    pytester.makepyfile("def test_llm(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"seedrepro: vcrpy * has moved internals the plugin uses ({named}); "
            "supported: vcrpy >= 8.2.1, < 10: install a supported one, e.g. pip install 'vcrpy>=8.2.1,<10'"
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "AttributeError" not in out and "INTERNALERROR" not in out
    # One line, not the line twice with "During handling of the above exception" between.
    # (The short summary's "ERROR ... - seedrepro: ..." line is pytest's own; CI=true prints it whole.)
    assert [line for line in result.stdout.lines if line.startswith("seedrepro: vcrpy")] == [
        line
        for line in result.stdout.lines
        if "has moved internals" in line and not line.startswith("ERROR ")
    ]
    assert len([line for line in result.stdout.lines if line.startswith("seedrepro: vcrpy")]) == 1
    assert "During handling" not in out


def test_pytest_s_runtestprotocol_runs_an_item_as_draws_call_it() -> None:
    from _pytest.runner import runtestprotocol

    parameters = inspect.signature(runtestprotocol).parameters
    # draws.py: runtestprotocol(item, log=False, nextitem=...) -> list of TestReport
    assert list(parameters)[:3] == ["item", "log", "nextitem"]


def test_pytest_s_runtestprotocol_and_item_request_in_a_run(pytester: pytest.Pytester) -> None:
    """Both privates used for real: a draws test (runtestprotocol) and a test whose set-up failed (item._request)."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_runtest_teardown(item):
            # writes.py reads it once set-up failed: pytest's own FixtureRequest of the test.
            print(f"\\nREQUEST {type(getattr(item, '_request', None)).__mro__}")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("set-up failed")

        def test_set_up_fails(broken):
            pass

        @pytest.mark.draws(3)
        def test_draws(seeded_llm):
            assert seeded_llm.draw in (0, 1, 2)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1, errors=1)
    requests = [line for line in result.stdout.lines if line.startswith("REQUEST ")]
    assert requests and all("FixtureRequest" in line for line in requests), requests
