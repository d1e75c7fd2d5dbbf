"""Writing the plugin's files: whole or not at all.

Every file the plugin writes (recordings, snapshots, the JSON report) goes
through :func:`write_atomically`: the text goes to a temporary file beside the
target, which is then renamed over it, so an interrupted run leaves the
previous file whole. Temporary files left behind by a run that was killed
mid-write are removed at the next write of the same target.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path


class NotWritten(Exception):
    """A file could not be written; the message names it and the reason, in one line."""


#: The longest file name (in bytes, with its extension) the plugin gives a
#: test's file: most file systems allow 255, and :func:`write_atomically`'s
#: temporary file adds 14 (``.<name>.XXXXXXXX.tmp``).
MAX_NAME_BYTES = 240


def own_stem(sanitised: str, original: str, nodeid: str, extension: str) -> str:
    """The stem of a test's file name (``extension`` has its dot), one no other test's name folds to.

    ``sanitised`` is ``original`` made safe for a file system. When that
    changed nothing and the name fits, it is the stem, exactly as before this
    rule (existing files keep working). Otherwise two tests could fold to one
    name (``test[a b]`` and ``test[a_b]``, or two long ids cut to one prefix),
    so the stem is cut to fit and followed by ``-`` and 8 hex digits of the
    sha256 of the node id's test part (the file's directory names the module).
    """
    budget = MAX_NAME_BYTES - len(extension.encode("utf-8"))
    if sanitised == original and len(sanitised.encode("utf-8")) <= budget:
        return sanitised
    test_part = nodeid.split("::", 1)[-1]
    digest = hashlib.sha256(test_part.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = sanitised.encode("utf-8")[: budget - len(digest) - 1].decode("utf-8", "ignore")
    return f"{stem}-{digest}"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _remove_stale_temps(target: Path) -> None:
    # Only this target's temp files: each test writes its own files, so under
    # pytest-xdist no other worker can be writing one of these right now.
    for stale in target.parent.glob(f"{_temp_prefix(target)}*.tmp"):
        stale.unlink(missing_ok=True)


def write_atomically(target: Path, text: str, *, what: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``target`` through a temp file and a rename.

    ``what`` names the file for the user ("the recording", "the snapshot"). Any
    OS error becomes :class:`NotWritten` with one readable line; the previous
    file, if any, is left as it was.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise NotWritten(f"cannot write {what} {target}: {_reason(exc, target)}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise NotWritten(f"cannot write {what} {target}: {_reason(exc, target)}") from None
        raise


def _mode_for(target: Path) -> int:
    """The mode the written file gets: the one it had, or what ``open()`` gives a new file.

    ``mkstemp`` makes its file readable by its owner only; renamed into place,
    a recording, snapshot or report would become unreadable to the other users
    who read it (a web server, another user in a container).
    """
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux tells the umask without changing it; elsewhere it is set and put back at once.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def not_written(exc: OSError, target: Path, *, what: str) -> NotWritten:
    """:class:`NotWritten` for an OS error raised while writing ``target`` elsewhere than here."""
    return NotWritten(f"cannot write {what} {target}: {_reason(exc, target)}")


def _reason(exc: OSError, target: Path) -> str:
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return _in_the_way(target)
    return exc.strerror or str(exc)


def _in_the_way(path: Path) -> str:
    """Which file stands where a directory of ``path`` should be, and what to do."""
    blocker = next((parent for parent in path.parents if parent.is_file()), None)
    if blocker is None:
        return "a file stands where a directory of its path should be (move or delete it)"
    return f"a file stands where a directory should be: {blocker} (move or delete it)"


def yaml_problem(exc: Exception) -> str:
    """A YAML parser's error in one line, with where it is: ``line 3, column 5: found ...``."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_text(path: Path, *, what: str) -> str | None:
    """The file's text, ``None`` when it does not exist; :class:`NotWritten`'s sibling for reads.

    A directory where the file should be, a file where a parent directory should
    be, or bytes that are not UTF-8 raise :class:`UnreadableFile` with one line.
    """
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise UnreadableFile(f"cannot read {what} {path}: {_in_the_way(path)}") from None
    except IsADirectoryError:
        raise UnreadableFile(f"cannot read {what} {path}: it is a directory (move or delete it)") from None
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"cannot read {what} {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {path}: {exc.strerror or exc}") from None


class UnreadableFile(Exception):
    """A file exists but cannot be read as text; the message says which and why."""
