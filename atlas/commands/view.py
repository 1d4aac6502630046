"""``atlas view RUN_DIR``: serve the Streamlit viewer (``viewer/app.py``) on 127.0.0.1.

RUN_DIR is a run directory (holds run.json) or a parent directory of runs (a run picker lists them).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from atlas.commands.options import port_number

HELP = "Browse a run (or a directory of runs) in the Streamlit viewer."
EXAMPLES = """examples:
  atlas view runs/demo                      # http://localhost:8501
  atlas view runs --port 8600               # a directory of runs: a run picker in the sidebar
  atlas view s3://bucket/atlas/demo --host 0.0.0.0
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="run directory or URI (s3://bucket/atlas/demo), or a directory holding runs",
    )
    parser.add_argument("--port", type=port_number, default=8501, help="port (default 8501)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)"
    )


def app_path():
    """``viewer/app.py`` of the installed (editable) project."""
    from pathlib import Path

    import viewer

    return Path(viewer.__file__).resolve().parent / "app.py"


VIEWER_STOP_S = 3.0  # a stopped viewer's grace for Streamlit's shutdown (open sessions: ~10 s), then SIGKILL


def streamlit_command(run_dir: str, port: int, host: str) -> list[str]:
    import sys

    return [
        sys.executable, "-m", "atlas.commands.viewer_server", "run", str(app_path()),  # streamlit's CLI
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal", "--logger.level", "warning",  # not its server's start-up lines
        "--", run_dir,
    ]  # fmt: skip


@contextlib.contextmanager
def viewer_stopped() -> Iterator[None]:
    """Ctrl-C or SIGTERM while a viewer serves: ``atlas: viewer stopped`` and 130 or 143, as every command
    exits after them (it exited 0: a scheduler could not tell a killed viewer from one that ended)."""
    from atlas.errors import Interrupted

    try:
        yield
    except KeyboardInterrupt as exc:
        raise Interrupted("viewer stopped", int(getattr(exc, "exit_code", 130))) from None


def run(args: argparse.Namespace) -> int:
    import subprocess

    from atlas.commands.options import check_listen
    from atlas.errors import AtlasError
    from atlas.store.location import open_location
    from atlas.store.manifest import RUN_FILE, list_runs, no_run_here

    run_dir = open_location(args.run_dir, what="RUN_DIR")
    if not run_dir.is_dir():
        if run_dir.is_file(""):
            raise AtlasError(f"{args.run_dir} is a file, not a run; pass the run's folder (out_dir/name)")
        raise AtlasError(
            f"run {args.run_dir} does not exist; pass a run's folder (out_dir/name, e.g. runs/demo) or a "
            "folder of runs (out_dir)"
        )
    if run_dir.is_file(RUN_FILE):
        from atlas.store.catalog import damage_line, damage_of

        damage = damage_of(run_dir)  # a damaged run.json is one line, not a page
        if damage:  # damaged shards (a marker, a file gone): served without them, said here and on each page
            print(
                f"atlas: warning: {damage_line(run_dir, damage)}; the viewer shows the rest", file=sys.stderr
            )
    elif not list_runs(run_dir):
        raise AtlasError(no_run_here(run_dir))  # a lost run.json, or runs deeper down: said
    check_listen(args.host, args.port)
    shown = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::", "::1") else args.host
    shown = f"[{shown}]" if ":" in shown else shown  # an IPv6 address in a URL
    print(f"atlas viewer: http://{shown}:{args.port}/  (run {run_dir}; Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen(streamlit_command(run_dir.uri, args.port, args.host))

    try:
        with viewer_stopped():  # SIGTERM (the CLI raises it as Terminated) and Ctrl-C: the server goes too
            return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=VIEWER_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
