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


def main() -> None:
    threading.Thread(target=_end_with, args=(os.getppid(),), name="atlas-parent-watch", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main

    streamlit_main(prog_name="streamlit")


if __name__ == "__main__":
    main()
