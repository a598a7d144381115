"""Helpers for driving the commands as a user would."""

from typer.testing import CliRunner

runner = CliRunner()


def invoke(app, args, **kwargs):
    """Run a Typer app with wide, plain output."""
    return runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"}, **kwargs)


def one_line_error(result, *fragments, code: int = 2):
    """The contract for bad input: exit code, no traceback, exactly one line starting 'error: '."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
