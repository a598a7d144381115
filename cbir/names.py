"""Collection names: Qdrant's own rules, checked wherever a name enters (flag, env var, metadata).

A collection name becomes a folder under CBIR_HOME/qdrant, so a name must never be able to
point anywhere else: no path separators, no `.` or `..`, nothing Qdrant itself refuses.
"""

from __future__ import annotations

import re
import unicodedata

from cbir.errors import BadName

MAX_BYTES = 255  # Qdrant's limit, and a file name's on common file systems
# Qdrant refuses these in collection names (they are special in paths on some system).
FORBIDDEN = '<>:"/\\|?*'
# The names cbir gives the collections behind a server alias and its write locks.
RESERVED = re.compile(r"--g-[0-9a-f]{16}-[0-9a-f]{8}$|^cbir-lock--")


def check_collection_name(name: str, source: str = "collection name") -> str:
    """Return name if it is a valid collection name, else raise BadName naming the broken rule."""
    if not isinstance(name, str):
        raise BadName(f"{source}: a collection name must be text (got {type(name).__name__})")
    shown = repr(name) if len(name) <= 60 else repr(name[:57] + "...")
    rules = ("a collection name is 1 to 255 bytes of text, not '.' or '..', without / \\ < > : \" | ? *, "
             "control characters or blanks at either end")
    if not name:
        raise BadName(f"{source}: the collection name is empty; {rules}")
    if name in (".", ".."):
        raise BadName(f"{source}: {shown} is not a collection name ('.' and '..' name folders); {rules}")
    bad = next((c for c in name if c in FORBIDDEN), None)
    if bad is not None:
        raise BadName(f"{source}: {shown} contains {bad!r}; {rules}")
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")), None)
    if control is not None:
        if unicodedata.category(control) == "Cs":
            raise BadName(f"{source}: {shown} is not valid UTF-8; {rules}")
        raise BadName(f"{source}: {shown} contains the control character {control!r}; {rules}")
    if name != name.strip():
        raise BadName(f"{source}: {shown} starts or ends with a blank; {rules}")
    if RESERVED.search(name):
        raise BadName(f"{source}: {shown} is reserved for cbir's own builds and locks; {rules}")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise BadName(f"{source}: {shown} is {size} bytes long, more than {MAX_BYTES}; {rules}")
    return name
