"""The errors users see: each a message that says what is wrong and what to do.

One base type (CbirError) that the CLI prints as one line; subclasses let code react to a kind of
problem (a busy store, a missing or damaged collection) without matching strings.
"""


class CbirError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""

    exit_code = 2


class Interrupted(CbirError):
    """The user pressed Ctrl-C; the message says how far the work got."""

    exit_code = 130


class BadName(CbirError):
    """A collection name that breaks the naming rules."""


class StoreError(CbirError):
    """The vector store cannot do what was asked."""


class StoreBusy(StoreError):
    """Another process holds what this one needs, for longer than it was willing to wait."""


class CollectionMissing(StoreError):
    """The collection does not exist (yet)."""


class CollectionIncompatible(StoreError):
    """The collection exists but was built by another model, for other vectors or another data set."""


class CollectionDamaged(StoreError):
    """The collection's files are not what was written: lost points, truncated or unreadable files."""


class ServerError(StoreError):
    """A Qdrant server did not answer, or answered with an error."""
