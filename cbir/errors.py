"""The one error type users see: a message that says what is wrong and what to do."""


class CbirError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""

    exit_code = 2


class Interrupted(CbirError):
    """The user pressed Ctrl-C; the message says how far the work got."""

    exit_code = 130
