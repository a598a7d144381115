"""Shared CLI options and the error handling every command uses.

The options carry no `envvar`: cbir.settings reads the environment, in one place (where `~` is
expanded and values are checked); the help texts name the variables. Every error a user can
cause, Click's own usage errors included, ends as one line on stderr and a non-zero exit:
exit 2 for bad input, 130 for Ctrl-C. CBIR_DEBUG=1 shows the traceback to a maintainer instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from typer import _click as click  # Typer 0.28 vendors Click (pyproject pins it)

from cbir import encoders, sources
from cbir.errors import CbirError
from cbir.settings import ENV, Settings


def _help(text: str, setting: str) -> str:
    return f"{text} [env: {ENV[setting]}]"


def path(value: str) -> Path:
    """A path flag's value: `--home ""` would silently mean the current folder, so an empty one is refused."""
    if not str(value).strip():
        raise typer.BadParameter("an empty path; give a file or folder, or leave the option out")
    return Path(value)


Home = Annotated[Optional[Path], typer.Option("--home", parser=path, help=_help("Where models, the embedded store and downloads live.", "home"), show_default=False)]
DataDir = Annotated[Optional[Path], typer.Option("--data-dir", parser=path, help=_help("Folder with the four IDX files (gzipped or not).", "data_dir"), show_default=False)]
QdrantUrl = Annotated[Optional[str], typer.Option("--qdrant-url", help=_help("Qdrant server URL; unset = the embedded store.", "qdrant_url"), show_default=False)]
QdrantApiKey = Annotated[Optional[str], typer.Option("--qdrant-api-key", help=_help("API key for the Qdrant server.", "qdrant_api_key"), show_default=False)]
Collection = Annotated[Optional[str], typer.Option("--collection", help=_help("Collection name (default: cbir-DATASET-ENCODER).", "collection"), show_default=False)]
Model = Annotated[Optional[Path], typer.Option("--model", parser=path, help=_help("A .keras model file; overrides --encoder's (default: the encoder's model trained under CBIR_HOME, else the packaged one).", "model"), show_default=False)]
def _choices(names) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


# The registries say what there is (adding an encoder or a data source changes the help by itself).
ENCODER_NAMES = tuple(encoders.names())
DATASET_NAMES = sources.NAMES
Dataset = Annotated[Optional[str], typer.Option("--dataset", help=_help(f"{_choices(DATASET_NAMES)} (default: mnist).", "dataset"), show_default=False)]
Encoder = Annotated[Optional[str], typer.Option("--encoder", "-e", help=_help(f"{_choices(ENCODER_NAMES)} (default: {encoders.DEFAULT_ENCODER}).", "encoder"), show_default=False)]
Wait = Annotated[Optional[float], typer.Option("--wait", help=_help("Seconds to wait for a store another process holds (default 30; 0 = fail at once).", "wait"), show_default=False)]


def settings(**flags) -> Settings:
    """Settings from env vars with the CLI flags that were given on top."""
    return Settings.from_env(**flags)


def _debug() -> bool:
    return os.environ.get("CBIR_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _silence_stdout() -> None:
    """After stdout failed (a full disk, a closed pipe), stop Python's own flush at exit from failing again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def one_line(text: str) -> str:
    """A message as one line: newlines and other control characters (in a file name, say) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def fail(message: str, code: int = 2) -> None:
    """Print one error line on stderr and exit."""
    try:
        typer.echo(f"error: {one_line(message)}", err=True)
    except OSError:
        pass
    raise typer.Exit(code)


def cli_errors(func):
    """Turn a CbirError into one line on stderr and exit code 2; Ctrl-C into exit code 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if sys.stdout is None:  # started with stdout closed (`cmd >&-`): the answer would vanish without a word
            fail("standard output is closed; nowhere to write the answer")
        try:
            return func(*args, **kwargs)
        except CbirError as exc:
            if _debug():
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            if _debug():
                raise
            fail("interrupted", 130)
        except BrokenPipeError:
            _silence_stdout()  # `search x.png | head -1`: the reader left; not an error worth a line
            raise typer.Exit(0) from None
        except OSError as exc:
            if _debug():
                raise
            if exc.filename is None and exc.errno is not None:  # writing the output failed (e.g. stdout is /dev/full)
                _silence_stdout()
                fail(f"cannot write the output: {exc.strerror}")
            fail(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc))
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: still one line, and the way to the traceback
            if _debug():
                raise
            fail(f"internal error ({type(exc).__name__}: {str(exc)[:200]}); run again with CBIR_DEBUG=1 to see where, "
                 "and report it")

    return wrapper


def _one_line(exc: click.ClickException) -> str:
    message = exc.format_message().strip().splitlines()
    text = " ".join(line.strip() for line in message if line.strip())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.exceptions.UsageError) and ctx is not None:
        text += f" (see `{ctx.command_path} --help`)"
    return text


def _run_one_line(super_main, args, prog_name, complete_var, standalone_mode, extra):
    """Run Click without its own error printing (a usage box of several lines), and print one line instead."""
    if not standalone_mode:
        return super_main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
    try:
        rv = super_main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
    except click.exceptions.NoArgsIsHelpError as exc:  # `ingest` alone: the help, as Click would show it
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except typer.Abort:
        fail_exit("interrupted", 130)
    except click.ClickException as exc:
        if _debug():
            raise
        fail_exit(_one_line(exc), exc.exit_code or 2)
    except OSError as exc:
        _silence_stdout()
        fail_exit(f"cannot write the output: {exc.strerror or exc}")
    sys.exit(rv if isinstance(rv, int) else 0)


def fail_exit(message: str, code: int = 2) -> None:
    try:
        click.echo(f"error: {one_line(message)}", err=True)
    except OSError:
        pass
    sys.exit(code)


class OneLineGroup(TyperGroup):
    """A Typer group whose usage errors are one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        return _run_one_line(super().main, args, prog_name, complete_var, standalone_mode, extra)


class OneLineCommand(TyperCommand):
    """A single Typer command whose usage errors are one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        return _run_one_line(super().main, args, prog_name, complete_var, standalone_mode, extra)


def progress_enabled(quiet: bool = False) -> bool:
    """Show progress bars only to a person at a terminal, and not with --quiet."""
    return not quiet and sys.stderr.isatty()


def _show_version(value: bool) -> None:
    if value:
        from cbir import __version__

        typer.echo(f"cbir {__version__}")
        raise typer.Exit(0)


Version = Annotated[Optional[bool], typer.Option("--version", help="Show cbir's version and exit.", callback=_show_version,
                                                 is_eager=True, show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
