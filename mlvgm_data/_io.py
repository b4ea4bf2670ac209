"""The one way this package writes files: atomically, never through a symlink, never outside
the folder it was given.

A file is written to a temporary name in its own folder, flushed to disk, then renamed over the
target (``os.replace``), so a kill at any moment leaves either the old file or the new one —
never a truncated one — and the temporary file is removed on failure. A target that is a
symlink, or a ``root`` that it would leave, is refused: a link planted in an output folder
cannot redirect a write elsewhere.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO, Iterator


def check_output_path(path: str | Path, what: str, root: str | Path | None = None) -> Path:
    """``path`` as a writable file target: its folder exists and is a folder, it is not a folder or
    a symlink itself, and (with ``root``) it lies inside ``root``. Raises ``ValueError`` naming ``what``."""
    p = Path(path)
    if p.is_symlink():
        raise ValueError(f"{what} {str(p)!r} is a symlink; refusing to write through it")
    if p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is a folder, not a file")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{what} {str(p)!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {str(p)!r}: the folder {str(parent)!r} is not writable")
    if root is not None:
        base = Path(root).resolve()
        target = parent.resolve() / p.name
        if target != base and base not in target.parents:
            raise ValueError(f"{what} {str(p)!r} leaves the output folder {str(base)!r} (through a link?)")
    return p


@contextlib.contextmanager
def atomic_writer(path: str | Path, what: str = "output", root: str | Path | None = None,
                  mode: str = "wb") -> Iterator[IO]:
    """A file object whose contents replace ``path`` when the block ends without an error."""
    p = check_output_path(path, what, root)
    mine = f".{p.name}.{_HOST}-"  # this host's temporary names for p: MINE<pid>-<random>.tmp
    for stale in p.parent.glob(f"{glob.escape(mine)}*.tmp"):
        if not _writer_alive(stale.name.removeprefix(mine)):  # left by a writer that was killed
            with contextlib.suppress(OSError):
                stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f"{mine}{os.getpid()}-", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, p.stat().st_mode & 0o7777 if p.exists() else 0o666 & ~_umask())  # mkstemp makes it 0600
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_output_path(p, what, root)  # a link planted while writing is refused too
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash once the folder is synced
        dir_fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# The temporary name carries the writer's host and pid: ranks of one job (or two jobs) writing the same
# file concurrently must not remove each other's live temporary file, only a dead writer's.
_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:32] or "host"


def _writer_alive(tag: str) -> bool:
    """Whether the process named by a temporary file's ``<pid>-<random>.tmp`` tail still runs here."""
    pid = tag.split("-", 1)[0]
    if not pid.isdigit():
        return True  # not a name this module makes: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str, what: str = "output", root: str | Path | None = None) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_writer(path, what, root, mode="w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, what: str = "output", root: str | Path | None = None) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_writer(path, what, root) as f:
        f.write(data)
    return Path(path)


def save_torch(obj: object, path: str | Path, what: str = "output", root: str | Path | None = None) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (a kill leaves the previous file)."""
    import torch

    with atomic_writer(path, what, root) as f:
        torch.save(obj, f)
    return Path(path)


def open_append(path: str | Path, what: str = "log", root: str | Path | None = None) -> IO[str]:
    """``path`` opened for appending text, refusing a symlink (``O_NOFOLLOW``) or a path outside ``root``."""
    p = check_output_path(path, what, root)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    return os.fdopen(fd, "a", encoding="utf-8")
