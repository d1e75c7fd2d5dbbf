"""Pending changes and the ``seedrepro`` command that reviews them (DESIGN, "Reviewing changes").

A ``record``, ``rerecord`` or ``live`` run keeps every test whose files would
change and were not written: the recording and snapshot ``--snapshot-update``
would have written, byte for byte, with what changed. They live beside
pytest's cache, one JSON file per test (so pytest-xdist workers never write
the same file), in ``<rootdir>/.pytest_cache/seedrepro/pending/``, which git
ignores. No run reads them: only this command does. ``seedrepro accept``
writes a test's files from them, with no API call and no key; ``reject``
forgets them.

This module is the command's whole import: no pytest, openai, vcrpy or syrupy.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pytest_seedrepro.files import NotWritten, write_atomically

#: The store, under the rootdir; its top directory (``.pytest_cache``) is ignored by git.
CACHE_DIR = ".pytest_cache"
STORE = f"{CACHE_DIR}/seedrepro/pending"
#: What marks a rootdir, as pytest looks for it (walking up from where the command runs).
ROOT_MARKERS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
#: pytest's own ``.gitignore`` content for its cache directory.
_GITIGNORE = "# Created by pytest-seedrepro automatically.\n*\n"
#: The format of an entry, for a later version that changes it.
VERSION = 1

#: Exit statuses.
OK, BAD_INPUT = 0, 2


def store_of(root: Path) -> Path:
    """The directory of pending changes of the project at ``root``."""
    return root / STORE


def entry_path(root: Path, nodeid: str) -> Path:
    """The file of ``nodeid``'s pending change: a name no other test's folds to, whatever its id holds."""
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()
    return store_of(root) / f"{digest}.json"


def sha256_of(path: Path) -> str | None:
    """The sha256 of the file's bytes, None when there is no such file."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return "unreadable"  # never equal to a digest: accepting over it is refused


# The run's side: pytest's writes.finish keeps and drops entries -----------------------------------


def keep(root: Path, entry: dict[str, Any]) -> None:
    """Store one test's pending change, replacing an older one; ``files.NotWritten`` when it cannot.

    ``entry`` holds the node id, the kind, the files (path relative to ``root``
    and the text accepting writes) and what changed. The sha256 of each file as
    it is now (after this run's own writes) is added, so accepting refuses when
    a file changed since.
    """
    for name in ("recording", "snapshot"):
        target = entry.get(name)
        if target is not None:
            target["sha256"] = sha256_of(root / target["path"])
    _ignored_by_git(root / CACHE_DIR)
    text = json.dumps({"version": VERSION, **entry}, indent=1, ensure_ascii=False) + "\n"
    write_atomically(entry_path(root, entry["nodeid"]), text, what="the pending change")


def _ignored_by_git(cache: Path) -> None:
    """Give ``cache`` the ``.gitignore`` pytest gives it, unless it has one (``-p no:cacheprovider``).

    Created exclusively, not through a temp file: pytest-xdist workers may all
    get here at once, and one must not remove another's temp file.
    """
    gitignore = cache / ".gitignore"
    if gitignore.exists():
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with gitignore.open("x", encoding="utf-8") as handle:
            handle.write(_GITIGNORE)
    except FileExistsError:
        pass  # another worker made it
    except OSError as exc:
        raise NotWritten(f"cannot write {gitignore}: {exc.strerror or exc}") from None


def drop(root: Path, nodeid: str) -> None:
    """Forget ``nodeid``'s pending change, if there is one (its test passed again)."""
    try:
        entry_path(root, nodeid).unlink(missing_ok=True)
    except OSError:
        pass  # a store that cannot be changed keeps an entry accepting will refuse if it is stale


# The command's side -----------------------------------------------------------------------------


class BadInput(Exception):
    """A bad argument, a missing store, a stale change: one line for the user."""


@dataclass
class Pending:
    """One stored pending change."""

    file: Path
    data: dict[str, Any]

    @property
    def nodeid(self) -> str:
        return str(self.data["nodeid"])

    @property
    def kind(self) -> str:
        return str(self.data.get("kind"))

    def line(self) -> str:
        """``NODEID  KIND  old -> new`` (fingerprint/model, ``-`` for none)."""
        old, new = self.data.get("old") or {}, self.data.get("new") or {}

        def identity(side: dict[str, Any]) -> str:
            return f"{side.get('fingerprint') or '-'}/{side.get('model') or '-'}"

        return f"{self.nodeid}  {self.kind}  {identity(old)} -> {identity(new)}"


def find_root(start: Path) -> Path | None:
    """The project's rootdir: the nearest directory up from ``start`` with the store or a pytest ini file."""
    for directory in (start, *start.parents):
        if store_of(directory).is_dir() or any((directory / name).is_file() for name in ROOT_MARKERS):
            return directory
    return None


def load(root: Path) -> tuple[list[Pending], list[str]]:
    """Every pending change under ``root``, by node id, and one line per file that cannot be read."""
    store = store_of(root)
    if not store.is_dir():
        return [], []  # no run has kept a change yet: nothing pending, which is no mistake
    entries, problems = [], []
    for file in sorted(store.glob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            if not _well_formed(data):
                raise ValueError("not a pending change of this version")
        except (OSError, ValueError) as exc:
            problems.append(f"cannot read the pending change {file}: {exc}; delete it and run its test again")
            continue
        entries.append(Pending(file, data))
    entries.sort(key=lambda entry: entry.nodeid)
    return entries, problems


def _well_formed(data: Any) -> bool:
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or not isinstance(data.get("nodeid"), str)
    ):
        return False
    for name in ("recording", "snapshot"):
        target = data.get(name)
        if target is not None and not (
            isinstance(target, dict)
            and isinstance(target.get("path"), str)
            and isinstance(target.get("text"), str | None)
            and isinstance(target.get("sha256"), str | None)
        ):
            return False
    return all(isinstance(data.get(side) or {}, dict) for side in ("old", "new", "divergence"))


def select(entries: list[Pending], wanted: Sequence[str], root: Path, cwd: Path) -> list[Pending]:
    """The entries ``wanted`` names (all when it is empty): a node id, a file or directory, a test's params.

    Node ids are as pytest prints them (relative to the rootdir); a path given
    relative to a subdirectory of it is understood too.
    """
    if not wanted:
        return list(entries)
    chosen: dict[str, Pending] = {}
    for name in wanted:
        found = [entry for entry in entries if _selects(name, entry.nodeid)]
        if not found and cwd != root:
            path, sep, rest = name.partition("::")
            try:
                relative = (cwd / path).resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                relative = path
            found = [entry for entry in entries if _selects(relative + sep + rest, entry.nodeid)]
        if not found:
            raise BadInput(f"no pending change for {name} (`seedrepro pending` lists them)")
        chosen.update((entry.nodeid, entry) for entry in found)
    return sorted(chosen.values(), key=lambda entry: entry.nodeid)


def _selects(name: str, nodeid: str) -> bool:
    name = name.removeprefix("./").rstrip("/") if "::" not in name else name.removeprefix("./")
    return (
        nodeid == name
        or nodeid.startswith(name + "::")
        or nodeid.startswith(name + "[")
        or ("::" not in name and nodeid.startswith(name + "/"))
    )


def _targets(entry: Pending) -> list[tuple[str, dict[str, Any]]]:
    return [(name, entry.data[name]) for name in ("recording", "snapshot") if entry.data.get(name)]


def check(entry: Pending, root: Path) -> None:
    """Refuse, in one line, to accept a change whose test moved or whose files changed since the run."""
    test_file = entry.nodeid.split("::", 1)[0]
    if not (root / test_file).is_file():
        raise BadInput(
            f"{entry.nodeid}: its test file {test_file} is gone since the run (moved or deleted): "
            "run the test again, then review its change"
        )
    for name, target in _targets(entry):
        path = root / target["path"]
        if sha256_of(path) != target.get("sha256"):
            raise BadInput(
                f"{entry.nodeid}: the {name} {target['path']} changed since the run: not accepted; "
                f"run the test again to review its change against it"
            )


def accept(entry: Pending, root: Path) -> None:
    """Write the test's recording and snapshot byte for byte, forget the change and the test's drift."""
    done: list[tuple[Path, bytes | None]] = []
    try:
        for name, target in _targets(entry):
            path = root / target["path"]
            before = path.read_bytes() if path.is_file() else None
            if target.get("text") is None:  # the test used nothing: it has no recording
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    raise NotWritten(f"cannot remove the {name} {path}: {exc.strerror or exc}") from None
            else:
                write_atomically(path, target["text"], what=f"the {name}")
            done.append((path, before))
    except (NotWritten, OSError) as exc:
        # Written together or not at all: the file already written gets its previous bytes back.
        for path, before in reversed(done):
            try:
                if before is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(before)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise NotWritten(f"{entry.nodeid}: not accepted: {exc.strerror or exc}") from None
        raise NotWritten(f"{entry.nodeid}: not accepted: {exc}") from None
    _forget_drift(entry)
    entry.file.unlink(missing_ok=True)


def _forget_drift(entry: Pending) -> None:
    """Take the test off ``--seedrepro-only-drifted``'s list (pytest's cache, JSON)."""
    drifted = entry.data.get("drifted")
    if not drifted:
        return
    path = Path(drifted)
    try:
        tests = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no list (or none pytest could read either): nothing to take it off
    if isinstance(tests, list) and entry.nodeid in tests:
        remaining = [test for test in tests if test != entry.nodeid]
        write_atomically(path, json.dumps(remaining, indent=2, sort_keys=True), what="pytest's cache")


def reject(entry: Pending) -> None:
    """Forget the change; every file stays as it is."""
    entry.file.unlink(missing_ok=True)


def diff(entry: Pending, root: Path) -> list[str]:
    """What accepting would change: a unified diff of each file, and the first divergence."""
    lines = [entry.line()]
    divergence = entry.data.get("divergence") or {}
    if divergence.get("message"):
        lines.append(f"  {divergence['message']}")
    for name, target in _targets(entry):
        path = root / target["path"]
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            old = ""
        new = target.get("text")
        if new is None:
            lines.append(f"  {name} {target['path']}: removed (the test made no call)")
            continue
        if old == new:
            lines.append(f"  {name} {target['path']}: unchanged")
            continue
        lines.extend(
            difflib.unified_diff(
                old.splitlines(), new.splitlines(), f"a/{target['path']}", f"b/{target['path']}", lineterm=""
            )
        )
    return lines


def accept_command(nodeid: str) -> str:
    """The command that accepts ``nodeid``'s pending change, quoted for a shell."""
    return f"seedrepro accept {shlex.quote(nodeid)}"


# The command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line on the command's stderr, not argparse's usage block
        raise BadInput(f"{message} (seedrepro --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="seedrepro",
        description="Review the changes pytest-seedrepro runs kept pending: accept writes a test's "
        "recording and snapshot as the run saw them, with no API call.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("pending", help="one line per pending change: node id, kind, old -> new")
    commands.add_parser("review", help="show each change and read a (accept), r (reject), s (skip) per line")
    for name, what in (("accept", "write the files of"), ("reject", "forget")):
        command = commands.add_parser(name, help=f"{what} the pending changes of NODEID (all when none)")
        command.add_argument("nodeids", nargs="*", metavar="NODEID")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    cwd: Path | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The ``seedrepro`` command; returns its exit status (0 success, 2 bad input)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except BadInput as exc:
        print(f"seedrepro: {exc}", file=err)
        return BAD_INPUT
    here = (cwd or Path.cwd()).absolute()
    try:
        root = find_root(here)
        if root is None:
            raise BadInput(
                f"no pytest project at or above {here} (no pytest.ini, pyproject.toml, tox.ini, setup.cfg)"
            )
        entries, problems = load(root)
        for problem in problems:
            print(f"seedrepro: {problem}", file=err)
        if args.command == "pending":
            for entry in entries:
                print(entry.line(), file=out)
            if not entries:
                print("no pending changes", file=out)
        elif args.command == "review":
            if not entries:
                print("no pending changes", file=out)
            elif not _review(entries, root, stdin or sys.stdin, out, err):
                return BAD_INPUT
        else:
            chosen = select(entries, args.nodeids, root, here)
            if args.command == "accept":
                for entry in chosen:  # all are checked before any is written
                    check(entry, root)
                _each(chosen, lambda entry: accept(entry, root), "accepted", out)
            else:
                _each(chosen, reject, "rejected", out)
    except (BadInput, NotWritten) as exc:
        print(f"seedrepro: {exc}", file=err)
        return BAD_INPUT
    return BAD_INPUT if problems else OK


def _each(entries: Iterable[Pending], act: Callable[[Pending], None], done: str, out: TextIO) -> None:
    for entry in entries:
        act(entry)
        print(f"{done}: {entry.nodeid}", file=out)


def _review(entries: list[Pending], root: Path, stdin: TextIO, out: TextIO, err: TextIO) -> bool:
    """Each change, then one answer per line: a accept, r reject, s skip; end of input skips the rest.

    Returns False when an accepted change was refused (its files changed since the run).
    """
    refused = False
    for position, entry in enumerate(entries, 1):
        print(f"[{position}/{len(entries)}]", *diff(entry, root), sep="\n", file=out)
        while True:
            print("accept (a), reject (r), skip (s)? ", end="", file=out, flush=True)
            answer = stdin.readline()
            if not answer:
                print("\nend of input: the rest is skipped", file=out)
                return not refused
            answer = answer.strip().lower()
            if answer in ("a", "r", "s"):
                break
            print(f"answer a, r or s, not {answer!r}", file=out)
        if answer == "a":
            try:
                check(entry, root)
                accept(entry, root)
            except (BadInput, NotWritten) as exc:
                print(f"seedrepro: {exc}", file=err)
                refused = True
                continue
            print(f"accepted: {entry.nodeid}", file=out)
        elif answer == "r":
            reject(entry)
            print(f"rejected: {entry.nodeid}", file=out)
        else:
            print(f"skipped: {entry.nodeid}", file=out)
    return not refused
