"""The viewer's Streamlit server as `atlas view` and `atlas run --view` start it, ended when the process that
started it is gone: a parent killed outright (SIGKILL, an OOM kill) no longer leaves a server holding the
port. ``python -m atlas.commands.viewer_server run APP ...`` takes streamlit's own arguments."""

from __future__ import annotations

import os
import signal
import threading
import time


def _end_with(parent: int) -> None:
    while os.getppid() == parent:  # re-parented (to init or a subreaper) once the parent is gone
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # Streamlit's own clean shutdown


def _redirect_stray_paths() -> None:
    """Serve the viewer behind :class:`viewer.stray_paths.StrayPathRedirect` (``/unit/extra`` was a blank
    page): Streamlit's server builds its app with ``create_starlette_app``, wrapped here. A Streamlit
    without that function serves as it is (the redirect is a convenience, not the viewer's function)."""
    try:
        from streamlit.web.server.starlette import starlette_server
    except ImportError:
        return
    make = getattr(starlette_server, "create_starlette_app", None)
    if make is None:
        return
    from streamlit import config

    from viewer.stray_paths import StrayPathRedirect

    def create(runtime: object) -> object:  # at the server's start: the command line's options are read
        return StrayPathRedirect(make(runtime), str(config.get_option("server.baseUrlPath") or ""))

    starlette_server.create_starlette_app = create


def main() -> None:
    threading.Thread(target=_end_with, args=(os.getppid(),), name="atlas-parent-watch", daemon=True).start()
    _redirect_stray_paths()
    from streamlit.web.cli import main as streamlit_main

    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
