"""Marker validation: a bad argument is one error of that test, naming it and the value.

Only tests that use ``seeded_llm`` are checked (another plugin's ``seed``
marker is not ours), and the rest of the suite still runs.
"""

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
        ("@pytest.mark.seed()", "*seed takes one or more integers, got args=() kwargs={}"),
        ("@pytest.mark.seed(1, 'x')", "*seed takes an integer, got 'x' (str)"),
        ("@pytest.mark.seed(1, 1)", "*seed got the same seed twice: (1, 1)"),
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
        (
            "@pytest.mark.seed(None, 1)",
            "test_bad.py::test_it: @pytest.mark.seed(None) pins no seed: it cannot be part of a seed matrix, "
            "got (None, 1)",
        ),
        (
            "@pytest.mark.llm_tolerance(0)",
            "test_bad.py::test_it: @pytest.mark.llm_tolerance takes one similarity above 0 and at most 1 "
            "(e.g. 0.9), got 0 (int)",
        ),
        ("@pytest.mark.llm_tolerance(1.5)", "*llm_tolerance takes one similarity*got 1.5 (float)"),
        ("@pytest.mark.llm_tolerance(-0.2)", "*llm_tolerance takes one similarity*got -0.2 (float)"),
        ("@pytest.mark.llm_tolerance('high')", "*llm_tolerance takes one similarity*got 'high' (str)"),
        ("@pytest.mark.llm_tolerance(True)", "*llm_tolerance takes one similarity*got True (bool)"),
        ("@pytest.mark.llm_tolerance()", "*llm_tolerance takes one similarity*got args=() kwargs={}"),
        ("@pytest.mark.llm_tolerance(0.9, 0.8)", "*llm_tolerance takes one similarity*got args=(0.9, 0.8)*"),
    ],
)
def test_bad_marker_argument_is_one_error_of_the_test(
    pytester: pytest.Pytester, decorator: str, message: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        {decorator}
        def test_it(seeded_llm):
            pass

        def test_neighbour(seeded_llm):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_it*", "seedrepro: *" + message.lstrip("*")])
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "Traceback" not in out and "pytest_seedrepro" not in out


def test_bad_marker_on_a_class_or_module_is_reported_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_mod="""
        import pytest
        pytestmark = pytest.mark.seed("module")

        def test_it(seeded_llm):
            pass
        """,
        test_cls="""
        import pytest

        @pytest.mark.on_fingerprint_change("never")
        class TestX:
            def test_it(self, seeded_llm):
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
        @pytest.mark.llm_tolerance(0.9)
        def test_it():
            pass
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=1)


def test_another_plugins_seed_marker_on_a_test_without_the_fixture_is_not_ours(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.seed("numpy-default")
        def test_numpy_style():
            pass

        @pytest.mark.seed(3)
        def test_ours(seeded_llm):
            assert seeded_llm.seed == 3
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_seed_none_on_a_class_and_a_seed_matrix_on_its_test_is_the_nearest_marker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.seed(None)
        class TestX:
            @pytest.mark.seed(1, 2)
            def test_matrix(self, seeded_llm):
                assert seeded_llm.seed in (1, 2)

            def test_no_seed(self, seeded_llm):
                assert seeded_llm.seed is None
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_marks_given_through_pytest_param_are_validated_the_same_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.seed("two")), pytest.param(3, marks=pytest.mark.seed(30))])
        def test_it(seeded_llm, n):
            if n == 3:
                assert seeded_llm.seed == 30
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["seedrepro: test_marks_given*.py::test_it[[]2]: @pytest.mark.seed takes an integer, got 'two' (str)"]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "pytest_seedrepro" not in out


def test_llm_params_values_must_be_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import decimal, pytest

        @pytest.mark.llm_params(temperature=decimal.Decimal("0.5"))
        def test_it(seeded_llm):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: *::test_it: @pytest.mark.llm_params(temperature=...) must be a JSON value*got Decimal('0.5') (Decimal)"
        ]
    )
