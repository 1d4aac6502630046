"""`atlas run CONFIG`: build (or resume) the atlas a config describes, on local Ray or a cluster."""

from __future__ import annotations

import argparse
import os
import sys
import threading

from atlas.commands.options import add_overrides, port_number

HELP = "Build the atlas for a config on Ray (local instance, --address, or under `ray job submit`)."
EXAMPLES = """examples:
  atlas run configs/demo.yaml                          # a local Ray instance
  atlas run configs/demo.yaml --set sampler.steps=50 --set name=demo50 --view
  atlas run configs/alexnet-deepsim.yaml --address 10.0.0.5:6379 --set out_dir=s3://bucket/atlas
  (rerun the same command to resume: complete shards are skipped)

exit status: 0 done; 2 something to fix first (bad input: nothing written; a full disk, refused
credentials); 1 the run started and could not finish (units failed, workers died, the store out of
reach): rerun to resume; 130 / 143 after Ctrl-C / SIGTERM
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="YAML run config, e.g. configs/demo.yaml")
    add_overrides(p)
    p.add_argument("--address", help="Ray address to join (default: RAY_ADDRESS, else a local instance)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--view",
        action="store_true",
        help="serve the viewer as soon as the first shard is written (it fills in while the rest are "
        "built) and keep it up after the run; Ctrl-C stops it",
    )
    p.add_argument("--port", type=port_number, help="viewer port with --view (default 8501)")
    p.add_argument(
        "--allow-code-change",
        action="store_true",
        help="resume a run although the source of your own network code (a python: model's files) changed "
        "since it started: only when the change leaves what the network computes as it was; run.json "
        "records it (resumed_code_change). Without it such a resume is refused",
    )


def run(args: argparse.Namespace) -> int:
    from atlas.commands.options import check_listen, load_command_config
    from atlas.errors import AtlasError, Interrupted
    from atlas.pipeline.cluster import stop_on_sigterm
    from atlas.pipeline.driver import (
        PIPE_CLOSED_EARLY,
        failure_lines,
        format_summary,
        run_atlas,
        run_location,
    )

    if args.port is not None and not args.view:
        raise AtlasError(
            f"--port {args.port}: the viewer's port, used only with --view; add --view or drop it"
        )
    if args.address is not None and not args.address.strip():  # `--address "$HEAD"` with HEAD unset
        raise AtlasError(
            "--address: empty; give the head's host:port (e.g. 10.0.0.5:6379), ray://host:10001 or auto, "
            "or leave it out for a local instance"
        )
    port = args.port or 8501
    if args.view:
        check_listen("127.0.0.1", port)  # before any work: the address printed later must serve
    cfg = load_command_config(args)
    viewer = _ViewerWhenReady(run_location(cfg), port) if args.view else None
    guards = [stop_on_sigterm()]  # as Ctrl-C: before Ray starts (the driver sets it again once it has)
    try:
        try:
            summary = run_atlas(
                cfg,
                address=args.address or cfg.ray.address,
                progress=not args.no_progress,
                allow_code_change=args.allow_code_change,
            )
        except BrokenPipeError:  # a warning before the run held it (the driver turns later ones into this)
            raise Interrupted(PIPE_CLOSED_EARLY, 141) from None
        print(format_summary(summary))
        for line in failure_lines(summary):  # why it exits 1, where errors go
            print(f"atlas: {line.strip()}", file=sys.stderr)
        if viewer is not None:
            guards.append(stop_on_sigterm())  # the driver put Ray's back
            return viewer.serve_until_stopped()
        return 0 if summary["errors"] == 0 else 1
    finally:
        for guard in reversed(guards):
            guard.restore()
        if viewer is not None:
            viewer.stop()


class _ViewerWhenReady:
    """Starts ``atlas view RUN`` in a subprocess once the run has its first completed shard."""

    def __init__(self, loc, port: int) -> None:

        self.loc, self.port, self.proc = loc, port, None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="atlas-view-when-ready", daemon=True)
        self._thread.start()

    def _ready(self) -> bool:
        from atlas.errors import AtlasError

        try:
            return bool(self.loc.list_files("_shards", suffix=".done", limit=1))
        except AtlasError:
            return False

    def _start(self) -> None:
        import subprocess

        from atlas.commands.view import streamlit_command

        if self.proc is None:
            env = dict(os.environ)  # an S3 run's storage settings, as the viewer reads them (AWS_*)
            if self.loc.uri.startswith("s3://"):
                for key, names in (
                    ("endpoint_override", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
                    ("region", ("AWS_REGION",)),
                ):
                    if self.loc.options.get(key):
                        env.update(dict.fromkeys(names, str(self.loc.options[key])))
            self.proc = subprocess.Popen(
                streamlit_command(self.loc.uri, self.port, "127.0.0.1"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            going_on = "" if self._complete() else "  (filling in while the run goes on)"
            print(f"\natlas viewer: http://localhost:{self.port}/{going_on}", flush=True)

    def _complete(self) -> bool:
        from atlas.errors import AtlasError
        from atlas.store.manifest import read_manifest

        try:
            return read_manifest(self.loc).get("status") == "complete"
        except AtlasError:
            return False

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            if self._ready():
                self._start()
                return

    def serve_until_stopped(self) -> int:
        self._done.set()
        self._thread.join(timeout=5)
        self._start()
        print("atlas viewer stays up; Ctrl-C stops it", flush=True)
        from atlas.commands.view import viewer_stopped

        with viewer_stopped():  # Ctrl-C 130, SIGTERM 143, as every command (stop() takes it down)
            return self.proc.wait() if self.proc is not None else 0

    def stop(self) -> None:
        import subprocess

        from atlas.commands.view import VIEWER_STOP_S

        self._done.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=VIEWER_STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
