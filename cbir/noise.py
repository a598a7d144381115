"""Keep TensorFlow's own start-up chatter off the user's stderr.

TensorFlow's C++ core logs through absl straight to file descriptor 2 ("oneDNN custom operations
are on ...", "All log messages before absl::InitializeLog() ..."), whatever TF_CPP_MIN_LOG_LEVEL
says. Commands that train or export run with fd 2 piped through a filter that drops those lines
and passes everything else (cbir's own messages, progress bars) on unchanged.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager

NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] .*)$"
)


@contextmanager
def quiet_tensorflow():
    """Run the body with TensorFlow's absl log lines (INFO, WARNING, ERROR: its internals, not the user's problem; real failures arrive as exceptions) filtered out of stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):  # no usable fd 2 (e.g. under a test runner): nothing to filter
        yield
        return
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                # Whole lines are checked; a progress bar's \r-updates go on at once.
                while True:
                    cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
                    if cut < 0:
                        break
                    head, pending = pending[: cut + 1], pending[cut + 1 :]
                    kept = b"".join(line for line in head.splitlines(keepends=True) if not NOISE.match(line.rstrip(b"\r\n")))
                    if kept:
                        os.write(saved, kept)
        if pending and not NOISE.match(pending):
            os.write(saved, pending)

    thread = threading.Thread(target=forward, name="cbir-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the filter reads to the end and stops
        thread.join(timeout=5)
        os.close(saved)
