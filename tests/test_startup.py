"""Start-up is sacred: a suite that never uses seeded_llm does not import openai, vcrpy or syrupy.

syrupy is itself a pytest plugin, so its own entry point imports part of it
whether or not seedrepro is installed; what must not grow is that set.
"""

from __future__ import annotations

import pytest

HEAVY = ("openai", "vcr", "syrupy", "httpx", "httpx2")


def _write_module_probe(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
            with open("heavy-modules.txt", "w") as f:
                f.write(" ".join(heavy))
        """.replace("HEAVY", repr(HEAVY))
    )


def test_a_suite_without_the_fixture_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    _write_module_probe(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.seed(1)  # markers alone must not pull anything in
        def test_plain():
            assert 1 + 1 == 2
        """
    )
    without = pytester.runpytest_subprocess("-p", "no:seedrepro", "-p", "no:cacheprovider")
    without.assert_outcomes(passed=1)
    baseline = (pytester.path / "heavy-modules.txt").read_text().split()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # The plugin really was active in that run:
    result.stdout.fnmatch_lines(["seedrepro: mode=replay*"])
    loaded = (pytester.path / "heavy-modules.txt").read_text().split()
    assert not [m for m in loaded if m.split(".")[0] in ("openai", "vcr", "httpx", "httpx2")]
    assert loaded == baseline


def test_the_probe_sees_openai_once_the_fixture_is_used(pytester: pytest.Pytester) -> None:
    """The counterpart that proves the probe above can fail."""
    _write_module_probe(pytester)
    pytester.makepyfile("def test_llm(seeded_llm):\n    assert seeded_llm.seed == 1234\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    loaded = (pytester.path / "heavy-modules.txt").read_text().split()
    assert "openai" in loaded and "vcr" in loaded


def test_an_sdk_the_plugin_cannot_patch_is_one_line_naming_the_supported_range(
    pytester: pytest.Pytester,
) -> None:
    # A subprocess: the inner conftest breaks the SDK for that run only.
    pytester.makeconftest(
        """
        import openai._base_client as base

        del base.SyncAPIClient._process_response  # as if a release had moved it
        """
    )
    pytester.makepyfile("def test_llm(seeded_llm):\n    seeded_llm.complete('x')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "seedrepro: openai * is not supported by pytest-seedrepro (it needs openai >= 1.55.3, < 4; "
            "missing: SyncAPIClient._process_response): install a supported one, e.g. pip install 'openai>=1.55.3,<4'"
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "KeyError" not in out and "INTERNALERROR" not in out
