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


def run_cli(tool: str, *args, env: dict | None = None, timeout: float = 300, **popen):
    """Run `ingest`, `search` or `cbir` as a real process (its own interpreter, its own stdout and stderr)."""
    import os
    import subprocess
    import sys

    module = {"ingest": "ingest.cli", "search": "search.cli", "cbir": "cbir.cli"}[tool]
    code = f"import sys; sys.argv[0] = {tool!r}; from {module} import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, **popen)


def start_cli(tool: str, *args, env: dict | None = None):
    """The same, started in the background (a subprocess.Popen with pipes)."""
    import os
    import subprocess
    import sys

    module = {"ingest": "ingest.cli", "search": "search.cli", "cbir": "cbir.cli"}[tool]
    code = f"import sys; sys.argv[0] = {tool!r}; from {module} import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_line_stderr(proc, *fragments, code: int = 2):
    """The contract for a real process: exit code, no traceback, exactly one 'error: ' line on stderr."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
