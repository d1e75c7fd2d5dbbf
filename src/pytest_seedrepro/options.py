"""Command-line flags and ini keys, and the one place that resolves them.

Precedence, for every option: command-line flag > environment variable (only
``SEEDREPRO_MODE``) > ini key > default. A bad value is a ``pytest.UsageError``
that names the valid values, so pytest prints one line and exits with code 4.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import pytest

MODES: Final = ("replay", "record", "rerecord", "live")
POLICIES: Final = ("skip", "warn", "fail")

DEFAULT_MODE: Final = "replay"
DEFAULT_POLICY: Final = "skip"
#: The seed of tests with no ``seed`` marker, unless ``--seedrepro-seed`` says otherwise.
DEFAULT_SEED: Final = 1234
DEFAULT_MODEL: Final = "gpt-4o-mini"
DEFAULT_CASSETTE_DIR: Final = "cassettes"
MODE_ENV_VAR: Final = "SEEDREPRO_MODE"


@dataclass(frozen=True)
class Settings:
    """The options in effect for this run."""

    mode: str
    on_fingerprint_change: str
    default_seed: int
    model: str
    base_url: str | None
    cassette_dir: str
    report_file: str | None = None
    #: ``--seedrepro-html``: the self-contained HTML report to write.
    html_file: str | None = None
    #: ``--seedrepro-only-drifted``: run only the tests that drifted in the last run.
    only_drifted: bool = False
    #: ``--seedrepro-repeat``: how many times each call is sent (1: once, the usual).
    repeat: int = 1
    #: ``--seedrepro-repeat-serial``: a call's repeats go one at a time, after it, not together with it.
    repeat_serial: bool = False
    #: ini values that do not apply to this run, one line each for the report header.
    ignored: tuple[str, ...] = ()

    @property
    def writes_recordings(self) -> bool:
        """Whether this mode may call the API and write cassettes."""
        return self.mode in ("record", "rerecord")

    @property
    def calls_api(self) -> bool:
        """Whether this mode may reach the network at all."""
        return self.mode != "replay"


def refresh_command(nodeid: str, mode: str = "rerecord") -> str:
    """The command that accepts a new backend's output for one test (``NODEID`` for any test).

    ``live`` suites keep no recordings, so they refresh the snapshot alone;
    every other mode re-records too, so recording and snapshot agree.
    """
    mode = "live" if mode == "live" else "rerecord"
    return f"pytest --seedrepro-mode={mode} --snapshot-update '{nodeid}'"


def refresh_mode(mode: str, has_recording: bool) -> str:
    """The mode that refreshes a test: ``rerecord``, or ``live`` for a test with no recording.

    A test that has a recording is refreshed by ``rerecord`` even from a
    ``live`` run: refreshing only its snapshot would part it from its
    recording, and replay would then fail or skip on the old answer.
    """
    return "live" if mode == "live" and not has_recording else "rerecord"


def refresh_drifted_command(mode: str = "rerecord") -> str:
    """The command that refreshes every test that drifted in the last run."""
    mode = "live" if mode == "live" else "rerecord"
    return f"pytest --seedrepro-mode={mode} --snapshot-update --seedrepro-only-drifted"


def record_command(nodeid: str) -> str:
    """The command that records what a test is missing."""
    return f"pytest --seedrepro-mode=record '{nodeid}'"


def repeat_line(settings: Settings) -> str:
    """How ``--seedrepro-repeat`` sends calls this run (batching servers may answer each way differently)."""
    if settings.repeat_serial:
        return f"every call is sent {settings.repeat} times, one at a time (--seedrepro-repeat-serial)"
    return (
        f"every call is sent {settings.repeat} times, its repeats together with it "
        "(--seedrepro-repeat-serial sends them one at a time)"
    )


def add_options(parser: pytest.Parser) -> None:
    """Register every flag with its ini twin."""
    group = parser.getgroup("seedrepro", "reproducible LLM tests (pytest-seedrepro)")
    _add(
        parser,
        group,
        "seedrepro_mode",
        "MODE",
        f"{{{','.join(MODES)}}}: replay recordings only, record what is missing, re-record all, "
        f"or call the API without recording (default: {DEFAULT_MODE}; env {MODE_ENV_VAR})",
    )
    _add(
        parser,
        group,
        "seedrepro_on_fingerprint_change",
        "POLICY",
        f"{{{','.join(POLICIES)}}}: what a test does when system_fingerprint changed and the output "
        f"with it (default: {DEFAULT_POLICY})",
    )
    _add(
        parser,
        group,
        "seedrepro_seed",
        "SEED",
        f"seed of tests with no seed marker (default: {DEFAULT_SEED})",
    )
    _add(
        parser,
        group,
        "seedrepro_model",
        "MODEL",
        f"model used by seeded_llm.complete() when neither the call nor llm_params names one "
        f"(default: {DEFAULT_MODEL})",
    )
    _add(
        parser,
        group,
        "seedrepro_base_url",
        "URL",
        "API base URL for seeded_llm's clients and for clients the code under test builds "
        "(default: the SDK's, i.e. OPENAI_BASE_URL or api.openai.com)",
    )
    _add(
        parser,
        group,
        "seedrepro_cassette_dir",
        "DIR",
        f"recordings directory, relative to each test module's directory (default: {DEFAULT_CASSETTE_DIR})",
    )
    _add(
        parser,
        group,
        "seedrepro_report",
        "PATH",
        "write the run's seedrepro summary (calls, tokens, fingerprints, changes) to this JSON file "
        "(default: none)",
    )
    _add(
        parser,
        group,
        "seedrepro_html",
        "PATH",
        "write a self-contained HTML drift report (verdicts, fingerprints old -> new, outputs side by "
        "side with a word diff) to this file (default: none)",
    )
    _add(
        parser,
        group,
        "seedrepro_repeat",
        "N",
        "send every call of every seeded_llm test N times, the repeats together with it (N >= 2, with "
        "--seedrepro-mode=live only) and report how reproducible the answers are; nothing is recorded or "
        "snapshotted (default: off)",
    )
    group.addoption(
        "--seedrepro-only-drifted",
        dest="seedrepro_only_drifted",
        action="store_true",
        default=None,
        help="run only the tests skipped, warned or failed for a fingerprint change in the last run "
        "(kept in pytest's cache, like --lf); with --seedrepro-mode=rerecord or live and --snapshot-update",
    )
    parser.addini(
        "seedrepro_only_drifted",
        "run only the tests that drifted in the last run (true/false)",
        type="bool",
        default=False,
    )
    group.addoption(
        "--seedrepro-repeat-serial",
        dest="seedrepro_repeat_serial",
        action="store_true",
        default=None,
        help="with --seedrepro-repeat: send a call's repeats one at a time, after it (its stream read to "
        "the end first), for servers that batch concurrent requests and may answer them differently "
        "(default: the repeats are sent together with the call)",
    )
    parser.addini(
        "seedrepro_repeat_serial",
        "with --seedrepro-repeat, send a call's repeats one at a time (true/false)",
        type="bool",
        default=False,
    )


def _add(parser: pytest.Parser, group: pytest.OptionGroup, name: str, metavar: str, help_text: str) -> None:
    flag = "--" + name.replace("_", "-")
    group.addoption(flag, dest=name, default=None, metavar=metavar, help=help_text)
    parser.addini(name, help_text.split(" (default")[0], default=None)


def _raw(config: pytest.Config, name: str, env_var: str | None = None) -> tuple[str, str] | None:
    """The first value given for ``name`` and where it came from, by precedence."""
    flag_value = config.getoption(name, default=None)
    if flag_value is not None:
        return str(flag_value), "--" + name.replace("_", "-")
    if env_var is not None and os.environ.get(env_var):
        return os.environ[env_var], env_var
    ini_value = config.getini(name)
    if ini_value:
        return str(ini_value).strip(), f"ini option {name}"
    return None


def _choice(
    config: pytest.Config, name: str, choices: tuple[str, ...], default: str, env: str | None = None
) -> str:
    found = _raw(config, name, env)
    if found is None:
        return default
    value, source = found
    if value not in choices:
        raise pytest.UsageError(f"{source}: {value!r} is not one of {', '.join(choices)}")
    return value


def _check_url(value: str, source: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise pytest.UsageError(
            f"{source}: {value!r} is not an http(s) URL; give the API's base URL, "
            "e.g. http://127.0.0.1:8080/v1 or https://api.openai.com/v1"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise pytest.UsageError(
            f"{source}: {value!r} has a port that is not a number from 0 to 65535; give the API's "
            "base URL, e.g. http://127.0.0.1:8080/v1 or https://api.openai.com/v1"
        ) from None


def _integer(config: pytest.Config, name: str, default: int, what: str, *, minimum: int | None = None) -> int:
    found = _raw(config, name)
    if found is None:
        return default
    value, source = found
    try:
        number = int(value, 10)
    except ValueError:
        number = None
    if number is None or (minimum is not None and number < minimum):
        raise pytest.UsageError(f"{source}: {value!r} is not {what}")
    return number


def resolve(config: pytest.Config) -> Settings:
    """Read every option once, validating as it goes."""
    seed = _integer(config, "seedrepro_seed", DEFAULT_SEED, "an integer seed")
    model = _raw(config, "seedrepro_model")
    base_url = _raw(config, "seedrepro_base_url")
    if base_url is not None:
        _check_url(*base_url)
    cassette_dir = _raw(config, "seedrepro_cassette_dir")
    report_file = _raw(config, "seedrepro_report")
    html_file = _raw(config, "seedrepro_html")
    mode = _choice(config, "seedrepro_mode", MODES, DEFAULT_MODE, MODE_ENV_VAR)
    # An ini file holds a project's settings for every run, so an ini value that
    # only fits some runs (a refresh, a live experiment) is ignored in the others
    # and the header says so; the same flag on the command line asks for it in
    # this run, where it cannot apply: a usage error.
    ignored: list[str] = []
    only_drifted_flag = bool(config.getoption("seedrepro_only_drifted", default=None))
    only_drifted = only_drifted_flag or bool(config.getini("seedrepro_only_drifted"))
    if only_drifted and (
        mode not in ("rerecord", "live") or not config.getoption("update_snapshots", default=False)
    ):
        if only_drifted_flag:
            raise pytest.UsageError(
                "--seedrepro-only-drifted refreshes the tests that drifted: use it with "
                "--seedrepro-mode=rerecord (or live) and --snapshot-update"
            )
        only_drifted = False
        ignored.append(
            "ini seedrepro_only_drifted=true ignored: it needs --seedrepro-mode=rerecord (or live) "
            "and --snapshot-update"
        )
    repeat = _integer(config, "seedrepro_repeat", 1, "a whole number of sends >= 2", minimum=2)
    if repeat > 1 and mode != "live":
        if config.getoption("seedrepro_repeat", default=None) is not None:
            raise pytest.UsageError(
                f"--seedrepro-repeat sends every call {repeat} times to the API: use it with "
                f"--seedrepro-mode=live (this run's mode is {mode})"
            )
        ignored.append(f"ini seedrepro_repeat={repeat} ignored: it needs --seedrepro-mode=live")
        repeat = 1
    # An ini value only says how repeats are sent whenever there are some: no
    # line in runs without them. The flag asks for repeats this run lacks.
    serial_flag = bool(config.getoption("seedrepro_repeat_serial", default=None))
    try:
        serial = serial_flag or bool(config.getini("seedrepro_repeat_serial"))
    except (ValueError, pytest.UsageError) as exc:  # pytest's own line does not say which option
        raise pytest.UsageError(f"ini option seedrepro_repeat_serial: {exc}; give true or false") from None
    if serial_flag and repeat < 2:
        raise pytest.UsageError(
            "--seedrepro-repeat-serial says how --seedrepro-repeat sends its repeats: use it with "
            "--seedrepro-repeat=N and --seedrepro-mode=live"
        )
    return Settings(
        mode=mode,
        repeat=repeat,
        repeat_serial=serial and repeat > 1,
        on_fingerprint_change=_choice(config, "seedrepro_on_fingerprint_change", POLICIES, DEFAULT_POLICY),
        default_seed=seed,
        model=model[0] if model else DEFAULT_MODEL,
        base_url=base_url[0] if base_url else None,
        cassette_dir=cassette_dir[0] if cassette_dir else DEFAULT_CASSETTE_DIR,
        report_file=report_file[0] if report_file else None,
        html_file=html_file[0] if html_file else None,
        only_drifted=only_drifted,
        ignored=tuple(ignored),
    )
