"""The ``atlas`` command.

Each subcommand lives in ``atlas/commands/<name>.py`` and exposes ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import only argparse at module level, so ``atlas --help``
is instant; heavy imports (torch, ray, duckdb) happen inside ``run``.

User errors (:class:`atlas.errors.AtlasError`) print one line, ``atlas: error: ...``, and exit 2; a run that
started and failed for a reason outside its input (:class:`atlas.errors.RunFailed`) exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

# subcommand -> module under atlas.commands (explicit table; no dynamic discovery)
COMMANDS: dict[str, str] = {
    "bootstrap": "bootstrap",
    "toyworld": "toyworld",
    "layers": "layers",
    "run": "run",
    "sql": "sql",
    "verify": "verify",
    "view": "view",
    "export": "export",
    "bench": "bench",
    "code-stats": "code_stats",
    "train-dae": "train_dae",
    "convert-caffe": "convert_caffe",
    "config": "config_cmd",
}


class OneLineParser(argparse.ArgumentParser):
    """Command-line mistakes (unknown flag, bad choice, missing argument) are one line, as every other user
    error: ``atlas: error: argument --format: invalid choice: 'xml' ... (see 'atlas sql --help')``, exit 2.
    Subcommand parsers inherit the class (``add_subparsers`` uses the parent's)."""

    def error(self, message: str) -> NoReturn:
        several = ""
        if self.prog.endswith(" sql") and message.startswith("unrecognized arguments"):  # RUN1 RUN2 QUERY
            several = "; atlas sql queries one run (several at once: docs/sql.md, 'Several runs at once')"
        self.exit(2, f"atlas: error: {message}{_did_you_mean(message)}{several} (see '{self.prog} --help')\n")


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")


def _did_you_mean(message: str) -> str:
    """`` (did you mean 'run'?)`` after argparse's invalid choice (``atlas runn``), when one is close."""
    found = _INVALID_CHOICE.search(message)
    if not found:
        return ""
    from atlas.errors import did_you_mean

    return did_you_mean(found.group(1), re.findall(r"'([^']*)'", found.group(2)))


class HelpFormatter(argparse.HelpFormatter):
    """Examples (text of several lines: the epilogs) keep their lines, one-line descriptions wrap, and
    every option's help states its default when it has one and does not say it already."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = not (
            default is None
            or isinstance(default, bool)
            or default is argparse.SUPPRESS
            or default in ([], "")
        )  # 0 and 1 are defaults to state (``in (False, True)`` would take them for booleans)
        if action.option_strings and shown and "default" not in text.lower() and action.help is not None:
            value = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
            return f"{text} (default {value})"
        return action.help


# metavars of the options several commands share, one spelling each
METAVARS = {"--config": "FILE", "--json": "PATH", "--cache-dir": "DIR", "--images": "DIR"}


def _tidy(parser: argparse.ArgumentParser, description: str | None = None) -> None:
    """One style for a command's parser and its own subcommands' (``bench quality``, ``toyworld show``):
    the help formatter, a description (the line the command list shows), shared metavars."""
    parser.formatter_class = HelpFormatter
    parser.description = parser.description or description
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        for option in action.option_strings:
            if option in METAVARS and action.metavar is None and action.nargs != 0:
                action.metavar = METAVARS[option]
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                _tidy(child, helps.get(name))


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``atlas`` parser and each subcommand's own parser."""
    from atlas import __version__

    parser = OneLineParser(
        prog="atlas",
        description="Atlas of preferred images for every unit of an image network (DGN-AM / PPGN-h).",
    )
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"atlas.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.epilog = p.epilog or getattr(module, "EXAMPLES", None)
        _tidy(p)
        p.set_defaults(_run=module.run)
        commands[name] = p
    return parser, commands


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options may sit anywhere among a subcommand's positionals (``atlas sql RUN --format csv QUERY``):
    what a plain parse leaves over is parsed again, intermixed, by the subcommand's own parser."""
    parser, commands = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        at = argv.index(args.command)
        if set(extra) & set(argv[:at]):  # e.g. `atlas --bogus sql RUN`: atlas itself has no such option
            parser.error(f"unrecognized arguments: {' '.join(a for a in argv[:at] if a in extra)}")
        own = commands[args.command]
        try:
            again = own.parse_intermixed_args(argv[at + 1 :])
        except TypeError:  # a parser with sub-commands of its own cannot intermix: its own errors then
            again, rest = own.parse_known_args(argv[at + 1 :])
            if rest:  # named by the sub-command that was given (`atlas bench viewer --help`)
                _chosen_subcommand(own, again).error(f"unrecognized arguments: {' '.join(rest)}")
        again.command = args.command
        return again
    return args


def _chosen_subcommand(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the sub-command ``args`` chose under ``parser`` (``bench`` -> ``bench viewer``)."""
    for action in parser._actions:  # argparse keeps no public list of a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return chosen
    return parser


def _utf8_arguments(argv: Sequence[str]) -> list[str]:
    """The arguments, once each is text: bytes the locale cannot decode arrive as surrogates, which no
    path or query takes."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode()
            print(f"atlas: error: argument '{shown}' holds bytes that are not UTF-8 text", file=sys.stderr)
            raise SystemExit(2) from None
    return list(argv)


def _output_gone() -> None:
    """stdout's (or stderr's) reader is gone: point both at /dev/null, so Python's flush at exit neither
    fails nor prints 'Exception ignored ... BrokenPipeError' (Python's docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _damaged_run_line(exc: BaseException) -> str | None:
    """A run's damaged Parquet bytes met by any command that reads it (export, a bench): DuckDB's error as
    one line naming the fix, as `atlas sql` says it (a user's trial: `atlas export` printed a traceback
    ending "_duckdb.Error: Out of buffer"). None for anything else."""
    if not type(exc).__module__.lstrip("_").startswith("duckdb"):
        return None  # duckdb is not imported for a command that never touched it
    from atlas.store.queries import query_error, reads_damaged_bytes

    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return query_error(exc) if reads_damaged_bytes(exc, first) else None


def os_error_line(exc: OSError, out: object = None) -> str:
    """An OSError as one line naming its file; without one (PIL or Arrow writing to an open file), a
    write's error names the command's ``--out`` (a trial's full disk read only "No space left on
    device"); a read's stays as it is."""
    said = exc.strerror or str(exc)
    if exc.filename:
        return f"{exc.filename}: {said}"
    writing = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM)
    if writing and isinstance(out, str | os.PathLike) and str(out).strip():  # not a read that failed
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return f"cannot write under {out}: {said}" + (
            "; free space there or choose another --out" if full else ""
        )
    return said


def main(argv: Sequence[str] | None = None) -> int:
    from atlas.errors import naming_stdout

    try:
        given = _utf8_arguments(sys.argv[1:] if argv is None else argv)
        args = parse(given)
        args.command_line = ["atlas", *given]  # what a report records as its command (bench provenance)
    except KeyboardInterrupt:  # while the commands' modules load
        print("atlas: interrupted", file=sys.stderr)
        return 130
    restore, terminated = _sigterm_as_interrupt()
    try:
        code = args._run(args)
        with naming_stdout():
            sys.stdout.flush()  # here, not at exit: a reader gone by then is the BrokenPipeError below
    except Exception as exc:
        if terminated():  # what the signal's interrupt left behind: DuckDB's "Query interrupted", say
            return _said_interrupted(143)
        return _failure(exc, args)
    except KeyboardInterrupt as exc:  # an Interrupted says how to resume
        code = int(getattr(exc, "exit_code", 143 if terminated() else 130))  # 141: its output pipe closed
        return _said_interrupted(code, str(exc))
    finally:
        restore()
    return int(code or 0)


def _failure(exc: Exception, args: argparse.Namespace) -> int:
    """The exit status of a command that raised ``exc``, its one line said; anything else raised again."""
    from atlas.errors import AtlasError

    if isinstance(exc, AtlasError):
        print(f"atlas: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))  # a RunFailed: 1
    if isinstance(exc, BrokenPipeError):  # e.g. `atlas config | head`: the reader has what it wanted
        _output_gone()
        return 0
    if isinstance(exc, OSError):  # read-only or full disk, a file where a directory should be, ...
        print(f"atlas: error: {os_error_line(exc, getattr(args, 'out', None))}", file=sys.stderr)
        return 2
    damaged = _damaged_run_line(exc)
    if damaged is None:
        raise exc
    print(f"atlas: error: {damaged}", file=sys.stderr)
    return 2


def _said_interrupted(code: int, said: str = "") -> int:
    """``atlas: interrupted`` (or an Interrupted's own line, which says how to resume) on stderr; ``code``."""
    try:
        print(f"atlas: {said}" if said else "atlas: interrupted", file=sys.stderr)
    except (BrokenPipeError, ValueError):  # stderr went with stdout (`2>&1 | head`)
        _output_gone()
    return code


def _sigterm_as_interrupt() -> tuple[Callable[[], None], Callable[[], bool]]:
    """SIGTERM (``kill``, ``timeout``, a scheduler) raised as :class:`Terminated` in every command, so its
    clean-up runs as after Ctrl-C and it exits 143 with one line: an export ended by ``timeout`` died of the
    signal and left its staging folder behind (a trial). Commands with their own handling (``atlas run``'s
    SigtermGuard, ``atlas view``) set theirs over it. Returns (what puts the earlier handler back, whether the
    signal came): a library may turn the interrupt into an error of its own (DuckDB: "Query interrupted"),
    which is then said as the interrupt it was."""
    import signal
    import threading

    from atlas.errors import Terminated

    came: list[bool] = []
    if threading.current_thread() is not threading.main_thread():  # an embedding program's thread
        return (lambda: None), (lambda: False)
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # a program embedding atlas keeps its own
        return (lambda: None), (lambda: False)

    def terminated(signum: int, frame: object) -> None:
        came.append(True)
        raise Terminated

    signal.signal(signal.SIGTERM, terminated)
    return (lambda: signal.signal(signal.SIGTERM, previous)), (lambda: bool(came))


INTERRUPTED_CODES = (130, 141, 143)  # Ctrl-C, a closed output pipe, SIGTERM


def entry() -> None:
    """The ``atlas`` command (pyproject's script, ``python -m atlas``): main's status as the exit status.
    After an interrupt with Ray loaded, the process ends without the interpreter's teardown, its output
    flushed first: Ray's core worker, its raylet gone with the same Ctrl-C (a terminal signals the whole
    process group), crashed that teardown in 3 of 19 of a user's tries (exit 139 after `atlas: interrupted`;
    the run was marked and Ray shut down before, so there is nothing left for the teardown to do)."""
    code = main()
    if code in INTERRUPTED_CODES and "ray" in sys.modules:
        ray = sys.modules["ray"]
        with contextlib.suppress(Exception):  # a cluster joined by --address: its driver leaves it now
            if ray.is_initialized():
                ray.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
