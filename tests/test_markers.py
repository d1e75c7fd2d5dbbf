"""Marker validation: a bad argument is one collection error naming the test and the value."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("decorator", "message"),
    [
        (
            '@pytest.mark.seed("abc")',
            "test_bad.py::test_it: @pytest.mark.seed takes an integer, got 'abc' (str)",
        ),
        ("@pytest.mark.seed(1.5)", "*seed takes an integer, got 1.5 (float)"),
        ("@pytest.mark.seed(True)", "*seed takes an integer, got True (bool)"),
        ("@pytest.mark.seed()", "*seed takes exactly one integer, got args=() kwargs={}"),
        ("@pytest.mark.seed(1, 2)", "*seed takes exactly one integer, got args=(1, 2)*"),
        (
            '@pytest.mark.llm_params("gpt-4o")',
            "*llm_params takes keyword arguments only*got positional ('gpt-4o',)",
        ),
        ("@pytest.mark.llm_params(seed=3)", "*llm_params cannot pin 'seed': use @pytest.mark.seed(n)"),
        (
            '@pytest.mark.on_fingerprint_change("ignore")',
            "*takes one of skip, warn, fail, got 'ignore' (str)",
        ),
        ("@pytest.mark.on_fingerprint_change()", "*takes one of skip, warn, fail, got args=() kwargs={}"),
    ],
)
def test_bad_marker_argument_is_a_collection_error(
    pytester: pytest.Pytester, decorator: str, message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        {decorator}
        def test_it(seeded_llm):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*", message])
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "Traceback" not in out and "pytest_seedrepro" not in out


def test_bad_marker_on_a_class_or_module_is_reported_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mod="""
        import pytest
        pytestmark = pytest.mark.seed("module")

        def test_it():
            pass
        """,
        test_cls="""
        import pytest

        @pytest.mark.on_fingerprint_change("never")
        class TestX:
            def test_it(self):
                pass
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*test_cls.py::TestX::test_it: *got 'never'*"])
    result.stdout.fnmatch_lines(["*test_mod.py::test_it: *seed takes an integer, got 'module' (str)"])


def test_markers_pass_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.seed(1)
        @pytest.mark.llm_params(temperature=0)
        @pytest.mark.on_fingerprint_change("warn")
        def test_it():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)
