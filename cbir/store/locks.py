"""File locks that wait, like SQLite's busy_timeout: shared for readers, exclusive for writers.

flock(2) locks belong to an open file and vanish with the process that held them, so a process
killed with SIGKILL never leaves a stale lock behind. A command that finds a lock taken retries
until its wait (`--wait` / CBIR_WAIT) runs out, then fails with one line naming the holders:
their pids and command lines (from /proc/locks where the system has it, else from what an
exclusive holder wrote into the lock file).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
import time
from pathlib import Path

from cbir.errors import StoreBusy


SECRET_FLAGS = ("--qdrant-api-key",)


def redact_argv(argv: list[str]) -> list[str]:
    """A command line safe to show or store: API keys and URL credentials replaced by ***."""
    from cbir.settings import redact_url

    out, hide = [], False
    for word in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        flag, eq, _ = word.partition("=")
        if flag in SECRET_FLAGS:
            out.append(f"{flag}=***" if eq else word)
            hide = not eq
            continue
        out.append(redact_url(word) if "@" in word else word)
    return out


def describe_process(pid: int) -> str:
    """'pid 123 (`search digit.png`)', or just 'pid 123' where the command line cannot be read."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = redact_argv([Path(w.decode(errors="replace")).name if i == 0 else w.decode(errors="replace")
                             for i, w in enumerate(argv) if w])
        if len(words) > 1 and words[0].startswith("python"):
            words = words[1:]  # `python -m x`, `python script`: the script says more than the interpreter
            words[0] = Path(words[0]).name if not words[0].startswith("-") else words[0]
        command = " ".join(" ".join(words).split())  # one line, however the arguments were written
    except OSError:
        return f"pid {pid}"
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {pid} (`{command}`)" if command else f"pid {pid}"


def _holders_from_proc(fd: int) -> list[int]:
    """Pids holding a flock on the file behind fd, from /proc/locks (Linux); [] elsewhere."""
    st = os.fstat(fd)
    inode = f":{st.st_ino}"
    pids = []
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(inode):
                dev = fields[5].rsplit(":", 1)[0]
                if int(dev.split(":")[0], 16) == os.major(st.st_dev) and int(dev.split(":")[1], 16) == os.minor(st.st_dev):
                    pids.append(int(fields[4]))
    except (OSError, ValueError, IndexError):
        return []
    return sorted(set(p for p in pids if p != os.getpid()))


class FileLock:
    """One lock file, taken shared or exclusive with a bounded wait.

    what: how messages name the thing the lock protects ("collection 'x'").
    """

    def __init__(self, path: Path, what: str, create: bool = True):
        self.path = Path(path)
        self.what = what
        self.create = create
        self._fd: int | None = None

    def acquire(self, exclusive: bool, wait: float, waited: float | None = None) -> "FileLock":
        """Take the lock, retrying until `wait` seconds have passed; then raise StoreBusy.

        waited: the wait the user asked for, when `wait` is what is left of it (for the message).

        Raises FileNotFoundError when create=False and the lock file is gone (its generation was retired).
        """
        base = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:  # a reader needs no write access to an existing lock file (flock works on read-only files)
            fd = os.open(self.path, base | (os.O_RDWR if exclusive else os.O_RDONLY))
        except FileNotFoundError:
            if not self.create:
                raise
            fd = os.open(self.path, base | os.O_RDWR | os.O_CREAT, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{self.path} is not a regular file")
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + wait
        pause = 0.005
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreBusy(self._busy_message(fd, wait if waited is None else waited, exclusive))
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.05)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if exclusive:
            self._note_holder(fd)
        return self

    def _note_holder(self, fd: int) -> None:
        """Write who holds the lock into the file, for systems without /proc/locks."""
        info = {"pid": os.getpid(), "command": " ".join(redact_argv(sys.argv))[:200], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # only informative

    def _busy_message(self, fd: int, wait: float, exclusive: bool) -> str:
        pids = _holders_from_proc(fd)
        if pids:
            who = ", ".join(describe_process(p) for p in pids[:3]) + (f" and {len(pids) - 3} more" if len(pids) > 3 else "")
        else:
            try:
                info = json.loads(os.pread(fd, 4096, 0) or b"{}")
                who = f"pid {int(info['pid'])} (`{str(info.get('command', ''))[:80]}`)"
            except (OSError, ValueError, KeyError, TypeError):
                who = "another cbir process"
        waited = f"after waiting {wait:g} s" if wait > 0 else "at once (--wait 0)"
        doing = "writing to" if not exclusive else "using"
        return (f"{self.what} is busy: {who} is {doing} it; gave up {waited}; "
                "try again when it is done, or wait longer with --wait SECONDS (CBIR_WAIT)")

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
