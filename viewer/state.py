"""Navigation state of the viewer, kept in sync with the URL's query parameters.

Canonical state lives in ``st.session_state`` under ``nav_*`` keys (non-widget keys, so Streamlit never
drops them when a page's widgets are not drawn). Deep links (``?page=unit&layer=fc8&unit=7``) seed it
on a session's first run; :func:`sync_query_params` writes it back after every run, so a reload (or a
copied URL) opens the same view.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

PAGES: dict[str, str] = {
    "overview": "Overview",
    "layer": "Layer grid",
    "unit": "Unit",
    "compare": "Compare",
    "sql": "SQL console",
}
PAGE_ICONS = {
    "overview": ":material/dashboard:",
    "layer": ":material/grid_view:",
    "unit": ":material/center_focus_strong:",
    "compare": ":material/compare:",
    "sql": ":material/terminal:",
}

# query parameter -> session key (all navigation state that a URL carries)
PARAMS = {
    "page": "nav_page",
    "run": "nav_run",
    "layer": "nav_layer",
    "unit": "nav_unit",
    "p": "nav_grid_page",
}
# widget keys mirroring navigation state (set together with it by go())
WIDGETS = {"nav_page": "w_page", "nav_layer": "w_layer", "nav_unit": "w_unit", "nav_run": "w_run"}


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def init_from_query_params() -> None:
    """Seed navigation state from the URL once per session."""
    ss = st.session_state
    if ss.get("nav_initialized"):
        return
    qp = st.query_params
    page = qp.get("page", "overview")
    ss["nav_page"] = page if page in PAGES else "overview"
    ss["nav_run"] = qp.get("run")
    ss["nav_layer"] = qp.get("layer")
    ss["nav_unit"] = _int(qp.get("unit"), None)
    ss["nav_grid_page"] = max(0, _int(qp.get("p"), 1) - 1)
    ss["nav_initialized"] = True


def get(name: str) -> Any:
    return st.session_state.get(f"nav_{name}")


def set_(name: str, value: Any) -> None:
    key = f"nav_{name}"
    st.session_state[key] = value
    widget = WIDGETS.get(key)
    if widget is not None:
        st.session_state[widget] = value


def go(**changes: Any) -> None:
    """Button callback: change page / layer / unit / run (also moves the matching widgets)."""
    for name, value in changes.items():
        set_(name, value)
        if name == "layer":
            set_("grid_page", 0)


def bind_widget(name: str) -> str:
    """Key of the widget showing ``nav_<name>``; seeded from the navigation state when absent."""
    key = WIDGETS[f"nav_{name}"]
    if key not in st.session_state or st.session_state[key] != get(name):
        st.session_state[key] = get(name)
    return key


def from_widget(name: str) -> None:
    """on_change callback: copy the widget's value into the navigation state."""
    value = st.session_state[WIDGETS[f"nav_{name}"]]
    st.session_state[f"nav_{name}"] = value
    if name == "layer":
        st.session_state["nav_grid_page"] = 0


def sync_query_params(multi_run: bool) -> None:
    """Write the navigation state to the URL (only the parameters that apply)."""
    page = get("page")
    params: dict[str, str] = {"page": page}
    if multi_run and get("run"):
        params["run"] = str(get("run"))
    if get("layer") is not None and page != "sql":
        params["layer"] = str(get("layer"))
    if page in ("unit", "compare") and get("unit") is not None:
        params["unit"] = str(get("unit"))
    if page == "layer" and get("grid_page"):
        params["p"] = str(int(get("grid_page")) + 1)
    current = {k: st.query_params.get(k) for k in st.query_params}
    if current != params:
        st.query_params.from_dict(params)


def link(page: str, layer: str | None = None, unit: int | None = None, run: str | None = None) -> str:
    """A relative deep link (for copying / sharing)."""
    parts = [f"page={page}"]
    if run:
        parts.append(f"run={run}")
    if layer is not None:
        parts.append(f"layer={layer}")
    if unit is not None:
        parts.append(f"unit={unit}")
    return "?" + "&".join(parts)
