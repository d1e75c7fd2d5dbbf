"""A catalogue of bad inputs: each user mistake is answered by one readable line, never a traceback.

Every case is a real pytest run (pytester, in process) of a small suite that
makes one mistake, with the real openai SDK and the project's test server.
Each case checks:

1. the outcome: a usage error (exit code 4, the line on stderr) for a bad
   flag, ini key or environment value; an error or a failure of the affected
   test otherwise (and the rest of the suite still runs);
2. the one line that names the cause and the fix, matched whole and exactly
   (paths and ports are filled in, no wildcards);
3. no traceback from the plugin: no "Traceback", "INTERNALERROR" or "During
   handling", and no frame of ``pytest_seedrepro/``;
4. nothing the user had is changed or deleted (every file, byte for byte),
   and no half-written ``*.tmp`` file is left.

The categories, in the order of ``CASES``:

- markers: ``seed`` not an int, a bool, empty, the same seed twice, one bad
  marker among several; ``llm_params`` positional, pinning ``seed``, with a
  value that is not JSON; ``on_fingerprint_change`` unknown; a bad marker on a
  class, in a module's ``pytestmark``, in ``pytest.param(marks=...)``; and
  another plugin's ``seed`` marker on a test without ``seeded_llm``, accepted;
- flags: ``--seedrepro-mode``, ``--seedrepro-on-fingerprint-change``,
  ``--seedrepro-seed``, ``--seedrepro-base-url`` (not a URL, a port that is not
  a number);
- ini keys and the environment: the same values as ini keys; ``SEEDREPRO_MODE``;
- recordings: a cassette that is corrupt YAML, cut short, foreign (a list, a
  snapshot copied over it), empty, not UTF-8;
- snapshots: corrupt YAML, cut short, foreign, empty, ``request`` a string,
  ``output`` a list, ``calls`` not a list;
- files in the way: a file where the ``cassettes`` directory, the module's
  cassette directory or the ``__snapshots__`` directory should be, a directory
  where the cassette should be;
- no key: ``record``, ``rerecord`` and ``live`` without ``OPENAI_API_KEY``;
- replay: no recording at all, another host or port than the one recorded,
  the Responses API with no recording;
- request bodies: a value that is not JSON, from the call or from a hook;
- reports: ``--seedrepro-report`` under a file.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
import yaml

from llmserver import LLMServer, running_server

CASSETTE = "cassettes/test_it/test_a.yaml"
SNAPSHOT = "__snapshots__/test_it/test_a.llm.yaml"

#: The suite most cases run: one test, one chat completion.
ONE_CALL = """
def test_a(seeded_llm):
    seeded_llm.complete("hello")
"""

NO_CALL = """
def test_a(seeded_llm):
    pass
"""


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    """One server for the module: recordings made in one case replay in another (same base URL)."""
    with running_server() as running:
        yield running


@dataclass
class Ctx:
    """What a set-up step works on."""

    pytester: pytest.Pytester
    monkeypatch: pytest.MonkeyPatch


Step = Callable[[Ctx], None]


def files_of(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (``None``) of the suite, pytest's own caches aside."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if not {".pytest_cache", "__pycache__"} & set(p.parts)
    }


# ------------------------------------------------------------------------------- set-up steps


def suite(source: str = ONE_CALL) -> Step:
    """The test module ``test_it.py``."""

    def step(ctx: Ctx) -> None:
        ctx.pytester.makepyfile(test_it=source)

    return step


def marked(decorator: str) -> Step:
    """``test_a`` under ``decorator``, beside a healthy ``test_b``."""
    return suite(
        f"""
import datetime, decimal, pytest

{decorator}
def test_a(seeded_llm):
    pass

def test_b(seeded_llm):
    pass
"""
    )


#: What ``recorded()`` wrote for each source: recorded once per module, copied in afterwards.
_RECORDED: dict[str, dict[str, bytes]] = {}


def recorded(source: str = ONE_CALL, *, keep: tuple[str, ...] = ("cassettes", "__snapshots__")) -> Step:
    """``suite(source)`` with its recording and snapshot, as ``record --snapshot-update`` writes them."""

    def step(ctx: Ctx) -> None:
        ctx.pytester.makepyfile(test_it=source)
        if source not in _RECORDED:
            run = ctx.pytester.runpytest("--seedrepro-mode=record", "--snapshot-update")
            run.assert_outcomes(passed=1)
            _RECORDED[source] = {
                name: data
                for name, data in files_of(ctx.pytester.path).items()
                if name.startswith(("cassettes", "__snapshots__")) and data is not None
            }
            for directory in ("cassettes", "__snapshots__"):
                shutil.rmtree(ctx.pytester.path / directory)
        for name, data in _RECORDED[source].items():
            if name.startswith(keep):
                (ctx.pytester.path / name).parent.mkdir(parents=True, exist_ok=True)
                (ctx.pytester.path / name).write_bytes(data)

    return step


def write(name: str, data: str | bytes) -> Step:
    """Write ``data`` to ``name``, replacing a file that is there."""

    def step(ctx: Ctx) -> None:
        path = ctx.pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)

    return step


def mkdir(name: str) -> Step:
    def step(ctx: Ctx) -> None:
        (ctx.pytester.path / name).mkdir(parents=True)

    return step


def cut(name: str, after: str) -> Step:
    """Cut ``name`` short just after the first ``after``, as an interrupted copy would."""

    def step(ctx: Ctx) -> None:
        path = ctx.pytester.path / name
        text = path.read_text()
        assert after in text, text
        path.write_text(text[: text.index(after) + len(after)])

    return step


def copy(source: str, target: str) -> Step:
    def step(ctx: Ctx) -> None:
        (ctx.pytester.path / target).write_bytes((ctx.pytester.path / source).read_bytes())

    return step


def edit_call(**changes: object) -> Step:
    """Hand-edit the snapshot's first call."""

    def step(ctx: Ctx) -> None:
        path = ctx.pytester.path / SNAPSHOT
        data = yaml.safe_load(path.read_text())
        data["calls"][0].update(changes)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return step


def ini(key: str, value: str) -> Step:
    """Set ``key`` in the suite's ini file (replacing it if it is there)."""

    def step(ctx: Ctx) -> None:
        path = ctx.pytester.path / "tox.ini"
        lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key} =")]
        path.write_text("\n".join([*lines, f"{key} = {value}", ""]))

    return step


def env(name: str, value: str | None) -> Step:
    def step(ctx: Ctx) -> None:
        if value is None:
            ctx.monkeypatch.delenv(name, raising=False)
        else:
            ctx.monkeypatch.setenv(name, value)

    return step


# ----------------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """How the run ends: its exit code, the test outcomes, and where the message is printed."""

    ret: int
    counts: dict[str, int] = field(default_factory=dict)
    stream: str = "stdout"


USAGE = Outcome(pytest.ExitCode.USAGE_ERROR, stream="stderr")
ERROR = Outcome(1, {"errors": 1})  # the test errors at set-up
FAILED = Outcome(1, {"failed": 1})
ERROR_BESIDE_A_PASS = Outcome(1, {"errors": 1, "passed": 1})  # the rest of the suite runs
ACCEPTED = Outcome(0, {"passed": 2})
RUN_FAILS = Outcome(1, {"passed": 1})  # the test passed, the run did not


@dataclass(frozen=True)
class Case:
    """One mistake: how to make it, how to run, how it must end, and the line that explains it.

    In ``args`` and ``message``, ``<root>`` is the suite's directory and ``<port>``
    the test server's port. ``message=None``: no line of seedrepro's at all.
    """

    id: str
    setup: tuple[Step, ...]
    args: tuple[str, ...]
    outcome: Outcome
    message: str | None


RECORD_COMMAND = "pytest --seedrepro-mode=record 'test_it.py::test_a'"
RECORD = f"Record it with: {RECORD_COMMAND}"
RERECORD = (
    "Fix or delete the file, then record it again with: pytest --seedrepro-mode=rerecord 'test_it.py::test_a'"
)
UPDATE = "Fix or delete it, then run with --snapshot-update"
A_URL = "give the API's base URL, e.g. http://127.0.0.1:8080/v1 or https://api.openai.com/v1"
CHAT = "POST /chat/completions (seed=1234, model=gpt-4o-mini)"
NO_KEY = (
    "seedrepro: test_it.py::test_a: --seedrepro-mode={mode} calls the API and needs OPENAI_API_KEY; "
    "set it (any value for a local server), or replay the recordings with --seedrepro-mode=replay"
)
#: A file left with a merge conflict: corrupt YAML (the same error with and without libyaml).
CONFLICT = "{key}:\n<<<<<<< HEAD\n{item}\n=======\n{item}\n>>>>>>> main\n"
JSON_VALUE = "pass a JSON value (str, number, bool, None, list, dict)"

CASES = [
    # --- markers: one error of the test, before it runs; the rest of the suite runs
    Case(
        "seed-marker-not-int",
        (marked('@pytest.mark.seed("abc")'),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed takes an integer, got 'abc' (str)",
    ),
    Case(
        "seed-marker-bool",
        (marked("@pytest.mark.seed(True)"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed takes an integer, got True (bool)",
    ),
    Case(
        "seed-marker-float",
        (marked("@pytest.mark.seed(1.5)"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed takes an integer, got 1.5 (float)",
    ),
    Case(
        "seed-marker-empty",
        (marked("@pytest.mark.seed()"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed takes one or more integers, got args=() kwargs={}",
    ),
    Case(
        "seed-marker-same-seed-twice",
        (marked("@pytest.mark.seed(7, 7)"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed got the same seed twice: (7, 7)",
    ),
    Case(
        "seed-marker-one-bad-among-several",
        (marked('@pytest.mark.seed(7)\n@pytest.mark.seed("seven")'),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.seed takes an integer, got 'seven' (str)",
    ),
    Case(
        "llm-params-positional",
        (marked('@pytest.mark.llm_params("gpt-4o")'),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.llm_params takes keyword arguments only "
        "(e.g. temperature=0), got positional ('gpt-4o',)",
    ),
    Case(
        "llm-params-with-seed",
        (marked("@pytest.mark.llm_params(seed=3)"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.llm_params cannot pin 'seed': use @pytest.mark.seed(n)",
    ),
    Case(
        "llm-params-value-is-a-decimal",
        (marked('@pytest.mark.llm_params(temperature=decimal.Decimal("0.5"))'),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.llm_params(temperature=...) must be a JSON value "
        "(str, number, bool, None, list, dict), got Decimal('0.5') (Decimal)",
    ),
    Case(
        "llm-params-value-is-an-object",
        (marked("@pytest.mark.llm_params(metadata={'day': datetime.date(2024, 1, 2)})"),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.llm_params(metadata=...) must be a JSON value "
        "(str, number, bool, None, list, dict), got {'day': datetime.date(2024, 1, 2)} (dict)",
    ),
    Case(
        "on-fingerprint-change-unknown",
        (marked('@pytest.mark.on_fingerprint_change("ignore")'),),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.on_fingerprint_change takes one of skip, warn, fail, "
        "got 'ignore' (str)",
    ),
    Case(
        "bad-marker-on-a-class",
        (
            suite(
                """
import pytest

@pytest.mark.on_fingerprint_change("never")
class TestA:
    def test_a(self, seeded_llm):
        pass

def test_b(seeded_llm):
    pass
"""
            ),
        ),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::TestA::test_a: @pytest.mark.on_fingerprint_change takes one of skip, warn, "
        "fail, got 'never' (str)",
    ),
    Case(
        "bad-marker-in-module-pytestmark",
        (
            suite(
                """
import pytest

pytestmark = pytest.mark.llm_params("gpt-4o")

def test_a(seeded_llm):
    pass

def test_b():  # no seeded_llm: the marker is not ours to judge here
    pass
"""
            ),
        ),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a: @pytest.mark.llm_params takes keyword arguments only "
        "(e.g. temperature=0), got positional ('gpt-4o',)",
    ),
    Case(
        "bad-marker-in-pytest-param",
        (
            suite(
                """
import pytest

@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.seed("two"))])
def test_a(seeded_llm, n):
    pass
"""
            ),
        ),
        (),
        ERROR_BESIDE_A_PASS,
        "seedrepro: test_it.py::test_a[2]: @pytest.mark.seed takes an integer, got 'two' (str)",
    ),
    Case(
        "other-plugins-seed-marker-without-seeded-llm-is-accepted",
        (
            suite(
                """
import pytest

@pytest.mark.seed("numpy-default")  # another plugin's marker, on a test that is not ours
def test_a():
    pass

@pytest.mark.seed(3)
def test_b(seeded_llm):
    assert seeded_llm.seed == 3
"""
            ),
        ),
        (),
        ACCEPTED,
        None,
    ),
    # --- flags: a usage error, one line on stderr
    Case(
        "flag-mode-unknown",
        (suite(),),
        ("--seedrepro-mode=recrod",),
        USAGE,
        "ERROR: --seedrepro-mode: 'recrod' is not one of replay, record, rerecord, live",
    ),
    Case(
        "flag-on-fingerprint-change-unknown",
        (suite(),),
        ("--seedrepro-on-fingerprint-change=ignore",),
        USAGE,
        "ERROR: --seedrepro-on-fingerprint-change: 'ignore' is not one of skip, warn, fail",
    ),
    Case(
        "flag-seed-not-int",
        (suite(),),
        ("--seedrepro-seed=0x10",),
        USAGE,
        "ERROR: --seedrepro-seed: '0x10' is not an integer seed",
    ),
    Case(
        "flag-base-url-not-a-url",
        (suite(),),
        ("--seedrepro-base-url=not-a-url",),
        USAGE,
        f"ERROR: --seedrepro-base-url: 'not-a-url' is not an http(s) URL; {A_URL}",
    ),
    Case(
        "flag-base-url-port-not-a-number",
        (suite(),),
        ("--seedrepro-base-url=http://127.0.0.1:80a/v1",),
        USAGE,
        "ERROR: --seedrepro-base-url: 'http://127.0.0.1:80a/v1' has a port that is not a number from 0 to "
        f"65535; {A_URL}",
    ),
    # --- ini keys and the environment: the same, naming where the value came from
    Case(
        "ini-mode-unknown",
        (suite(), ini("seedrepro_mode", "offline")),
        (),
        USAGE,
        "ERROR: ini option seedrepro_mode: 'offline' is not one of replay, record, rerecord, live",
    ),
    Case(
        "ini-on-fingerprint-change-unknown",
        (suite(), ini("seedrepro_on_fingerprint_change", "maybe")),
        (),
        USAGE,
        "ERROR: ini option seedrepro_on_fingerprint_change: 'maybe' is not one of skip, warn, fail",
    ),
    Case(
        "ini-seed-not-int",
        (suite(), ini("seedrepro_seed", "1.5")),
        (),
        USAGE,
        "ERROR: ini option seedrepro_seed: '1.5' is not an integer seed",
    ),
    Case(
        "ini-base-url-not-a-url",
        (suite(), ini("seedrepro_base_url", "127.0.0.1:8080/v1")),
        (),
        USAGE,
        f"ERROR: ini option seedrepro_base_url: '127.0.0.1:8080/v1' is not an http(s) URL; {A_URL}",
    ),
    Case(
        "ini-base-url-port-not-a-number",
        (suite(), ini("seedrepro_base_url", "http://localhost:port/v1")),
        (),
        USAGE,
        "ERROR: ini option seedrepro_base_url: 'http://localhost:port/v1' has a port that is not a number "
        f"from 0 to 65535; {A_URL}",
    ),
    Case(
        "env-mode-unknown",
        (suite(), env("SEEDREPRO_MODE", "bogus")),
        (),
        USAGE,
        "ERROR: SEEDREPRO_MODE: 'bogus' is not one of replay, record, rerecord, live",
    ),
    # --- recordings: the test errors at set-up, its snapshot is kept (also under --snapshot-update)
    Case(
        "cassette-corrupt-yaml",
        (recorded(), write(CASSETTE, CONFLICT.format(key="interactions", item="- request: {}"))),
        ("--snapshot-update",),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"not valid YAML (line 3, column 1: could not find expected ':'). {RERECORD}",
    ),
    Case(
        "cassette-truncated",
        (recorded(), cut(CASSETTE, after='"choices": [')),
        ("--snapshot-update",),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"not valid YAML (line 14, column 48: found unexpected end of stream). {RERECORD}",
    ),
    Case(
        "cassette-foreign-list",
        (recorded(), write(CASSETTE, "- GET /v1/models\n- POST /v1/chat/completions\n")),
        ("--snapshot-update",),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"not a vcrpy cassette (expected a mapping with an 'interactions' list). {RERECORD}",
    ),
    Case(
        "cassette-is-a-snapshot",
        (recorded(), copy(SNAPSHOT, CASSETTE)),
        ("--snapshot-update",),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"not a vcrpy cassette (expected a mapping with an 'interactions' list). {RERECORD}",
    ),
    Case(
        "cassette-empty",
        (recorded(), write(CASSETTE, "")),
        ("--snapshot-update",),
        FAILED,
        f"seedrepro: test_it.py::test_a: call 0: {CHAT} has no recording: "
        "<root>/cassettes/test_it/test_a.yaml is empty (vcrpy treats an empty cassette as a missing one). "
        f"{RECORD}",
    ),
    Case(
        "cassette-not-utf8",
        (recorded(), write(CASSETTE, "# recorded in a café\n".encode("latin-1"))),
        ("--snapshot-update",),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"not UTF-8 text (invalid continuation byte at byte 19). {RERECORD}",
    ),
    # --- snapshots: the test fails after its body; the snapshot is kept as it is
    Case(
        "snapshot-corrupt-yaml",
        (recorded(), write(SNAPSHOT, CONFLICT.format(key="calls", item="- output: hello"))),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"not valid YAML (line 3, column 1: could not find expected ':'). {UPDATE}",
    ),
    Case(
        "snapshot-truncated",
        (recorded(), cut(SNAPSHOT, after="content: hel")),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"call 0 is not a mapping with an 'output'. {UPDATE}",
    ),
    Case(
        "snapshot-foreign",
        (recorded(), copy(CASSETTE, SNAPSHOT)),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"expected a mapping with a 'calls' list (not a seedrepro snapshot). {UPDATE}",
    ),
    Case(
        "snapshot-empty",
        (recorded(), write(SNAPSHOT, "")),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"the file is empty. {UPDATE}",
    ),
    Case(
        "snapshot-request-is-a-string",
        (recorded(), edit_call(request="hello")),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"call 0: 'request' should be a mapping, got str 'hello'. {UPDATE}",
    ),
    Case(
        "snapshot-output-is-a-list",
        (recorded(), edit_call(output=["line one", "line two"])),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"call 0: 'output' should be text or null, got list ['line one', 'line two']. {UPDATE}",
    ),
    Case(
        "snapshot-calls-not-a-list",
        (recorded(), write(SNAPSHOT, "calls:\n  endpoint: /chat/completions\n  output: hello\n")),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        f"'calls' should be a list, got dict {{'endpoint': '/chat/completions', 'ou.... {UPDATE}",
    ),
    # --- a file where a directory should be, a directory where a file should be
    Case(
        "cassettes-dir-is-a-file",
        (suite(), write("cassettes", "my notes\n")),
        (),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"a file stands where a directory should be: <root>/cassettes (move or delete it). {RERECORD}",
    ),
    Case(
        "cassettes-dir-is-a-file-on-rerecord",
        (suite(), write("cassettes", "my notes\n")),
        ("--seedrepro-mode=rerecord", "--snapshot-update"),
        Outcome(1, {"passed": 1, "errors": 1}),  # the body passed; writing its recording did not
        "seedrepro: test_it.py::test_a: cannot write the recording <root>/cassettes/test_it/test_a.yaml: "
        "a file stands where a directory should be: <root>/cassettes (move or delete it)",
    ),
    Case(
        "module-cassette-dir-is-a-file",
        (suite(), write("cassettes/test_it", "my notes\n")),
        (),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"a file stands where a directory should be: <root>/cassettes/test_it (move or delete it). {RERECORD}",
    ),
    Case(
        "snapshots-dir-is-a-file",
        (recorded(keep=("cassettes",)), write("__snapshots__", "my notes\n")),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        "a file stands where a directory should be: <root>/__snapshots__ (move or delete it)",
    ),
    Case(
        "snapshots-dir-is-a-file-on-update",
        (suite(), write("__snapshots__", "my notes\n")),
        ("--seedrepro-mode=record", "--snapshot-update"),
        FAILED,
        "seedrepro: test_it.py::test_a: cannot read the snapshot <root>/__snapshots__/test_it/test_a.llm.yaml: "
        "a file stands where a directory should be: <root>/__snapshots__ (move or delete it)",
    ),
    Case(
        "cassette-is-a-directory",
        (suite(), mkdir(CASSETTE)),
        (),
        ERROR,
        "seedrepro: test_it.py::test_a: cannot read the recording <root>/cassettes/test_it/test_a.yaml: "
        f"it is a directory (move or delete it). {RERECORD}",
    ),
    # --- modes that call the API, without a key
    Case(
        "record-without-key",
        (suite(), env("OPENAI_API_KEY", None)),
        ("--seedrepro-mode=record",),
        ERROR,
        NO_KEY.format(mode="record"),
    ),
    Case(
        "rerecord-without-key",
        (recorded(), env("OPENAI_API_KEY", None)),
        ("--seedrepro-mode=rerecord", "--snapshot-update"),
        ERROR,
        NO_KEY.format(mode="rerecord"),
    ),
    Case(
        "live-without-key",
        (suite(), env("OPENAI_API_KEY", "")),  # set but empty counts as missing
        ("--seedrepro-mode=live",),
        ERROR,
        NO_KEY.format(mode="live"),
    ),
    # --- replay: what is missing, and what to do
    Case(
        "replay-with-no-recording",
        (suite(),),
        (),
        FAILED,
        f"seedrepro: test_it.py::test_a: call 0: {CHAT} has no recording: "
        f"no file <root>/cassettes/test_it/test_a.yaml. {RECORD}",
    ),
    Case(
        "replay-against-another-host",
        (recorded(),),
        ("--seedrepro-base-url=http://localhost:<port>/v1",),
        FAILED,
        f"seedrepro: test_it.py::test_a: call 0: {CHAT} was recorded against http://127.0.0.1:<port>, "
        "this run sends it to http://localhost:<port> (host '127.0.0.1' recorded, 'localhost' now; "
        "in <root>/cassettes/test_it/test_a.yaml). Replay with the base URL it was recorded with "
        f"(--seedrepro-base-url=http://127.0.0.1:<port>/v1), or record it again with: {RECORD_COMMAND}",
    ),
    Case(
        "replay-against-another-port",
        (recorded(),),
        ("--seedrepro-base-url=http://127.0.0.1:9/v1",),
        FAILED,
        f"seedrepro: test_it.py::test_a: call 0: {CHAT} was recorded against http://127.0.0.1:<port>, "
        "this run sends it to http://127.0.0.1:9 (port <port> recorded, 9 now; "
        "in <root>/cassettes/test_it/test_a.yaml). Replay with the base URL it was recorded with "
        f"(--seedrepro-base-url=http://127.0.0.1:<port>/v1), or record it again with: {RECORD_COMMAND}",
    ),
    Case(
        "responses-api-with-no-recording",
        (
            suite(
                "def test_a(seeded_llm):\n    seeded_llm.client.responses.create(model='gpt-4o-mini', input='hi')\n"
            ),
        ),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: call 0: POST /responses (model=gpt-4o-mini) has no recording: "
        f"no file <root>/cassettes/test_it/test_a.yaml. {RECORD}",
    ),
    # --- a request body that is not JSON
    Case(
        "request-param-not-json",
        (
            suite(
                "import decimal\n\ndef test_a(seeded_llm):\n"
                "    seeded_llm.complete('hello', temperature=decimal.Decimal('0.5'))\n"
            ),
        ),
        (),
        FAILED,
        "seedrepro: test_it.py::test_a: call 0: the request body is not JSON: temperature is "
        f"Decimal('0.5') (Decimal); {JSON_VALUE}",
    ),
    Case(
        "request-hook-adds-a-value-not-json",
        (
            suite(),
            write(
                "conftest.py",
                "import datetime\n\ndef pytest_seedrepro_request(body, item):\n"
                "    body['metadata'] = {'day': datetime.date(2024, 1, 2)}\n",
            ),
        ),
        ("--seedrepro-mode=record",),
        FAILED,
        "seedrepro: test_it.py::test_a: call 0: the request body is not JSON: metadata.day is "
        f"datetime.date(2024, 1, 2) (date); {JSON_VALUE}",
    ),
    # --- reports
    Case(
        "report-path-under-a-file",
        (suite(NO_CALL), write("reports", "my notes\n")),
        ("--seedrepro-report=reports/seedrepro.json",),
        RUN_FAILS,
        "seedrepro: cannot write the report <root>/reports/seedrepro.json: "
        "a file stands where a directory should be: <root>/reports (move or delete it)",
    ),
]


def _exact(line: str) -> str:
    """``line`` as an fnmatch pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in line)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_is_one_readable_line_and_loses_nothing(
    case: Case,
    make_suite: Callable[[str], pytest.Pytester],
    server: LLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "responses-api" in case.id and not hasattr(openai.OpenAI, "responses"):
        pytest.skip("this openai SDK has no Responses API (openai < 1.66)")
    pytester = make_suite(server.base_url)
    for step in case.setup:
        step(Ctx(pytester, monkeypatch))

    def fill(text: str) -> str:
        return text.replace("<root>", str(pytester.path)).replace("<port>", str(server.port))

    before = files_of(pytester.path)
    result = pytester.runpytest(*(fill(arg) for arg in case.args))

    # 1. the outcome
    assert result.ret == case.outcome.ret, result.stdout.str() + result.stderr.str()
    if case.outcome.counts:
        result.assert_outcomes(**case.outcome.counts)
    # 2. one line with the cause and the fix
    lines = result.stderr if case.outcome.stream == "stderr" else result.stdout
    if case.message is None:
        assert not [line for line in lines.lines if line.startswith("seedrepro: test_it.py")], lines.str()
    else:
        lines.fnmatch_lines([_exact(fill(case.message))])
    # 3. no traceback from the plugin
    out = result.stdout.str() + "\n" + result.stderr.str()
    for sign in ("Traceback", "INTERNALERROR", "During handling", f"pytest_seedrepro{os.sep}"):
        assert sign not in out, out
    # 4. nothing lost or changed, nothing new (no half-written file, not even a directory)
    assert files_of(pytester.path) == before
    assert not list(pytester.path.rglob("*.tmp"))


def test_the_catalogue_has_one_case_per_mistake_and_exact_patterns() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert fnmatch.fnmatchcase("test_a[2] *?", _exact("test_a[2] *?"))
    assert not fnmatch.fnmatchcase("test_a2 xy", _exact("test_a[2] *?"))
