"""Flags, ini keys, SEEDREPRO_MODE: precedence, help, header, and bad values."""

from __future__ import annotations

import pytest

FLAGS = ("--seedrepro-mode", "--seedrepro-on-fingerprint-change", "--seedrepro-seed")


def test_help_lists_the_flags_with_their_defaults(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*--seedrepro-mode=MODE*",
            "*(default: replay; env SEEDREPRO_MODE)*",
            "*--seedrepro-on-fingerprint-change=POLICY*",
            "*(default: skip)*",
            "*--seedrepro-seed=SEED*",
        ]
    )
    assert "seed of tests with no seed marker (default: 1234)" in result.stdout.str()
    for ini_key in (
        "seedrepro_mode",
        "seedrepro_on_fingerprint_change",
        "seedrepro_seed",
        "seedrepro_base_url",
    ):
        result.stdout.fnmatch_lines([f"*{ini_key} (string)*"])


def test_markers_are_listed(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.seed(n, ...):*",
            "@pytest.mark.llm_params(**params):*",
            "@pytest.mark.on_fingerprint_change(policy):*",
        ]
    )


def test_header_shows_mode_seed_and_policy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(
        "--seedrepro-mode=live", "--seedrepro-seed=9", "--seedrepro-on-fingerprint-change=warn"
    )
    result.stdout.fnmatch_lines(["seedrepro: mode=live, default seed=9, on fingerprint change=warn"])


@pytest.mark.parametrize(
    ("flag", "ini", "env", "expected"),
    [
        (None, None, None, "mode=replay"),
        (None, "record", None, "mode=record"),
        (None, "record", "rerecord", "mode=rerecord"),
        ("live", "record", "rerecord", "mode=live"),
    ],
)
def test_mode_precedence_flag_env_ini_default(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    ini: str | None,
    env: str | None,
    expected: str,
) -> None:
    if ini:
        pytester.makeini(f"[pytest]\nseedrepro_mode = {ini}\n")
    monkeypatch.delenv("SEEDREPRO_MODE", raising=False)
    if env:
        monkeypatch.setenv("SEEDREPRO_MODE", env)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*([f"--seedrepro-mode={flag}"] if flag else []))
    result.stdout.fnmatch_lines([f"seedrepro: {expected},*"])


def test_ini_sets_seed_and_policy(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nseedrepro_seed = 555\nseedrepro_on_fingerprint_change = fail\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--seedrepro-on-fingerprint-change=warn")
    result.stdout.fnmatch_lines(["seedrepro: mode=replay, default seed=555, on fingerprint change=warn"])


@pytest.mark.parametrize(
    ("args", "ini", "env", "message"),
    [
        (
            ["--seedrepro-mode=recrod"],
            "",
            None,
            "--seedrepro-mode: 'recrod' is not one of replay, record, rerecord, live",
        ),
        (
            [],
            "seedrepro_mode = offline",
            None,
            "ini option seedrepro_mode: 'offline' is not one of replay, *",
        ),
        ([], "", "sometimes", "SEEDREPRO_MODE: 'sometimes' is not one of replay, *"),
        (["--seedrepro-on-fingerprint-change=ignore"], "", None, "*'ignore' is not one of skip, warn, fail"),
        ([], "seedrepro_on_fingerprint_change = maybe", None, "*'maybe' is not one of skip, warn, fail"),
        (["--seedrepro-seed=abc"], "", None, "--seedrepro-seed: 'abc' is not an integer seed"),
        ([], "seedrepro_seed = 1.5", None, "ini option seedrepro_seed: '1.5' is not an integer seed"),
    ],
)
def test_bad_option_value_is_one_usage_error_line(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: str | None,
    message: str,
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    monkeypatch.delenv("SEEDREPRO_MODE", raising=False)
    if env:
        monkeypatch.setenv("SEEDREPRO_MODE", env)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stderr.str()
