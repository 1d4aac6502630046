"""Navigation state of the viewer and the URL it is mirrored to.

Pages are routed by ``st.navigation``: each page has a ``url_path`` (``/layer``, ``/unit``, ``/audit``, ...;
the overview is ``/``). Everything else a URL carries is a query parameter (``run``, ``layer``, ``unit``,
``p``; the grid's sort and filters, :data:`GRID_PARAMS`; ``frame``; the console's own query ``q``), seeded
into ``st.session_state`` on a session's first run and written back by :func:`sync_query_params` after
every run. The older form ``?page=unit&...``
still opens the named page (see :func:`init_from_query_params`).

Pages are switched by links (``st.page_link`` with the parameters the new page is to show,
:func:`link_params`): page and URL change in one history entry, and :func:`follow_history` takes the link's
parameters up. Buttons change state on their own page (:func:`go`). A callback that must switch pages (the
sidebar's layer picker on the overview) records the wanted page and the app switches to it
(:func:`take_pending`) before anything is drawn.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlencode, urlparse

import streamlit as st

from viewer import data

PAGES: dict[str, str] = {
    "overview": "Overview",
    "layer": "Layer grid",
    "unit": "Unit",
    "compare": "Compare",
    "audit": "Audit",
    "sql": "SQL console",
}
PAGE_ICONS = {
    "overview": ":material/dashboard:",
    "layer": ":material/grid_view:",
    "unit": ":material/center_focus_strong:",
    "compare": ":material/compare:",
    "audit": ":material/flag:",
    "sql": ":material/terminal:",
}
DEFAULT_PAGE = "overview"  # served at the app's root URL

# widget keys mirroring navigation state (set together with it by set_())
WIDGETS = {"nav_layer": "w_layer", "nav_unit": "w_unit", "nav_run": "w_run"}

# the layer grid's sort and filters in its URL: query parameter -> (widget key, value when left alone)
GRID_PARAMS: dict[str, tuple[str, Any]] = {
    "sort": ("grid_sort", None),  # None: the first sort order
    "units": ("grid_units", ""),
    "facets": ("grid_min_facets", 0),
    "judge": ("grid_judge", "all"),
    "per": ("grid_page_size", 48),
    "label": ("grid_label", ""),
    "flag": ("grid_flag", "all units"),
    "picture": ("grid_picture", "best"),
    "natural": ("grid_natural", "all units"),
}
GRID_VIEW_PARAMS = ("sort", "per", "picture")  # how the grid shows its units, not which: no filters
# grid values a link writes as a plain word (?sort=activation): parameter -> {word: the widget's value};
# a link with the widget's own value (an older link's "activation ↓") is taken as well
GRID_URL_WORDS: dict[str, dict[str, str]] = {
    "sort": data.SORT_WORDS,
    "natural": {"active": "active on natural images", "silent": "silent on natural images"},
}


# the compare page's choices in its URL: query parameter -> widget key (the units box's key is per layer,
# ``cmp_units_<layer>``; each widget's default is kept under ``<key>_first`` by the page)
COMPARE_PARAMS: dict[str, str] = {"vs": "cmp_other", "mode": "cmp_mode", "cmp": "cmp_units"}
COMPARE_MODES = {"runs": "two runs", "methods": "two methods"}  # ?mode= value -> the control's label

# the audit page's controls in its URL: query parameter -> widget key (defaults under ``<key>_first``)
AUDIT_PARAMS: dict[str, str] = {"pictures": "audit_kinds", "all": "audit_every_layer", "flag": "audit_flag"}
AUDIT_SCOPE = {"1": True, "0": False}  # ?all= value -> the "every layer" toggle


def compare_key(param: str, layer: str | None) -> str:
    """The widget key behind compare parameter ``param`` (the units box has one per layer)."""
    key = COMPARE_PARAMS[param]
    return f"{key}_{layer}" if param == "cmp" else key


def url_path(page: str) -> str:
    """The page's ``st.Page`` url_path ('' for the default page)."""
    return "" if page == DEFAULT_PAGE else page


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def init_from_query_params() -> None:
    """Seed navigation state from the URL once per session (a legacy ``page`` parameter becomes pending)."""
    ss = st.session_state
    if ss.get("nav_initialized"):
        return
    qp = st.query_params
    ss["nav_page"] = DEFAULT_PAGE
    unknown = unknown_path(_url_path(), str(st.get_option("server.baseUrlPath") or ""))
    if unknown:
        pages = ", ".join("/" + url_path(p) for p in PAGES)
        notice(f"There is no page /{unknown} (pages: {pages}); showing the overview.")
    ss["nav_pending"] = qp.get("page") if qp.get("page") in PAGES else None
    if qp.get("page") is not None and ss["nav_pending"] is None:
        pages = ", ".join(PAGES)
        notice(f"The link's page {qp.get('page')!r} is not a viewer page ({pages}); showing the overview.")
    ss["nav_run"] = qp.get("run")
    ss["nav_layer"] = qp.get("layer")
    ss["nav_unit"] = _int(qp.get("unit"), None)
    if qp.get("unit") is not None and ss["nav_unit"] is None:
        notice(f"The link's unit {qp.get('unit')!r} is not a unit number; showing the layer's first unit.")
    ss["nav_grid_page"] = max(0, _int(qp.get("p"), 1) - 1)
    if qp.get("p") is not None and _int(qp.get("p"), None) is None:  # as a bad unit is said
        notice(f"The link's page {qp.get('p')!r} is not a page number; showing the grid's first page.")
    ss["nav_sql"] = qp.get("q")
    if qp.get("frame") == "0":  # the unit page's frame toggle, off
        ss["unit_outline_cell"] = False
    ss["nav_grid_url"] = {k: qp.get(k) for k in GRID_PARAMS if qp.get(k) is not None}  # for grid_widget
    ss["nav_grid_return"] = {k: qp.get(k) for k in GRID_RETURN_KEYS if qp.get(k) is not None}  # grid_return
    ss["nav_cmp_url"] = {k: qp.get(k) for k in COMPARE_PARAMS if qp.get(k) is not None}  # compare_widget
    ss["nav_audit_url"] = {k: qp.get(k) for k in AUDIT_PARAMS if qp.get(k) is not None}  # audit_widget
    ss["nav_initialized"] = True


OWN_QUERY = "your query"  # the console's example box once the text is the user's own (written as ?q=)
FIRST_EXAMPLE = "mean activation per layer"  # the console's query when its URL has no ?q=

# widgets whose values outlive their page (Streamlit drops a widget's state in a run that does not draw
# it: without this, the grid's sort and filters were gone after a visit to a unit page)
KEPT_WIDGETS = (
    *(key for key, _ in GRID_PARAMS.values()),
    "unit_outline_cell",
    "sql_example",
    "sql_text",
    "cmp_other",
    "cmp_mode",
    "audit_kinds",
    "audit_every_layer",
    "audit_flag",
)


def keep_widget_state() -> None:
    """Keep the values of :data:`KEPT_WIDGETS` across pages (Streamlit's documented way: re-assigning a
    widget's key at the top of a run interrupts its clean-up)."""
    ss = st.session_state
    for key in KEPT_WIDGETS:
        if key in ss:
            ss[key] = ss[key]


# the query parameters of each page beyond ``run`` and ``layer`` (see params_for)
GRID_RETURN_KEYS = ("p", *GRID_PARAMS)  # a unit page's URL from a grid tile: the grid to return to

PAGE_KEYS: dict[str, set[str]] = {
    "unit": {"unit", "frame", *GRID_RETURN_KEYS},
    "compare": {"unit", *COMPARE_PARAMS},
    "layer": {"p", *GRID_PARAMS},
    "audit": set(AUDIT_PARAMS),
    "sql": {"q"},
}


def url_keys(page: str) -> set[str]:
    """The query parameters :func:`params_for` can write on ``page``."""
    return {"run"} | ({"layer"} if page != "sql" else set()) | PAGE_KEYS.get(page, set())


def unknown_path(path: str, base: str = "") -> str | None:
    """The part of a URL path (after the server's base path) that names no page: ``/nosuchpage`` ->
    ``nosuchpage``; None for a page's path, the root or the base path alone."""
    rest = path.strip("/")
    base = base.strip("/")
    if base and (rest == base or rest.startswith(base + "/")):
        rest = rest[len(base) :].strip("/")
    if not rest or any(rest == url_path(p) for p in PAGES):
        return None
    return rest


def history_step(here: str) -> tuple[str, dict[str, str]] | None:
    """(page, its URL's query parameters) when this run, on page ``here``, shows a URL whose state this
    session does not hold: the browser moved in its history (Back, Forward), or a link switched pages (the
    sidebar's page menu, a grid button, a unit's title: ``st.page_link`` with the parameters the new page
    is to show). None otherwise.

    Streamlit reruns the app with the URL the browser went to and flags a history step
    (``is_history_navigation``; where a Streamlit lacks the flag, a URL that differs from the last one this
    session wrote counts). A run on the page the session showed that Streamlit does not flag is a click on
    that page, whose URL can still be the one before the last sync: not followed. Nor is a URL without
    parameters (but the console's: its first example) or with parameters its page never writes; the
    session's state stands then.
    """
    ss = st.session_state
    written = ss.get("nav_synced")
    current = _url_params()
    if not ss.get("nav_initialized") or written is None or (not current and here != "sql"):
        return None  # the console's own URL has no parameters for its first example
    if _history_flag() is False and here == get("page"):  # a click on this page, not a link to another
        return None
    if current == written:
        return None
    if set(current) - url_keys(here):
        return None
    return here, current


def _url_params() -> dict[str, str]:
    """The query parameters of the URL this run was started with."""
    return {k: st.query_params.get(k) for k in st.query_params}


def _history_flag() -> bool | None:
    """Whether Streamlit flags this run as the browser's history navigation (None: it has no such flag)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return getattr(get_script_run_ctx(), "is_history_navigation", None)


def _url_path() -> str:
    """The path of the URL this run was started with ('/unit', '/' for the overview)."""
    return urlparse(str(st.context.url or "")).path


def follow_history(here: str) -> None:
    """Re-seed the navigation state from the URL of a history step or a link (:func:`history_step`) that
    brought this run to page ``here``.

    The session's state is seeded from its first URL only, and :func:`sync_query_params` would write it
    straight back over the URL that Back or a link went to. Only the keys the page's URL carries change: a
    step back to a grid URL keeps the unit last opened, a step to the console keeps the layer.
    """
    step = history_step(here)
    if step is None:
        return
    page, qp = step
    st.session_state.pop(LAYER_PICKED, None)  # the URL's unit is checked against its layer again
    for name in ("run", "layer"):
        if name in qp:
            set_(name, qp[name])
    unit = _int(qp.get("unit"), None)
    if page in ("unit", "compare") and unit is not None:
        set_("unit", unit)
    seed = {
        "layer": _seed_grid,
        "unit": _seed_unit_page,
        "sql": _seed_console,
        "compare": _seed_compare,
        "audit": _seed_audit,
    }
    seed.get(page, lambda _qp: None)(qp)


def _seed_grid(qp: dict[str, str]) -> None:
    """The grid's widgets back to their defaults, then the URL's values (:func:`grid_widget`)."""
    set_("grid_page", max(0, _int(qp.get("p"), 1) - 1))
    _reset_grid_widgets(GRID_PARAMS)
    st.session_state["nav_grid_url"] = {k: qp[k] for k in GRID_PARAMS if k in qp}


def _reset_grid_widgets(params: Any) -> None:
    """The grid widgets of query parameters ``params`` back to their defaults. A default is *assigned*,
    not popped: a popped key leaves the browser's widget showing its old value (a filter the tiles no
    longer use, applied again by the next click)."""
    ss = st.session_state
    for param in params:
        key, default = GRID_PARAMS[param]
        value = ss.get(f"{key}_first") if default is None else default  # the sort's default: its first
        if value is None:
            ss.pop(key, None)
        else:
            ss[key] = value


def clear_grid_filters() -> None:
    """Button callback: every grid filter off (the sort, page size and picture stay), back to page 1."""
    _reset_grid_widgets([p for p in GRID_PARAMS if p not in GRID_VIEW_PARAMS])
    set_("grid_page", 0)


def _seed_compare(qp: dict[str, str]) -> None:
    """The compare page's controls back to their defaults (assigned, as the grid's), then the URL's."""
    keys = {param: compare_key(param, get("layer")) for param in COMPARE_PARAMS}
    _seed_link_widgets(keys, "nav_cmp_url", qp)


def _seed_audit(qp: dict[str, str]) -> None:
    """The audit page's controls back to their defaults, then the URL's (:func:`audit_widget`)."""
    _seed_link_widgets(AUDIT_PARAMS, "nav_audit_url", qp)


def _seed_link_widgets(keys: dict[str, str], store: str, qp: dict[str, str]) -> None:
    """Widgets ``keys`` (query parameter -> key) back to their remembered defaults; the URL's values are
    kept under ``store`` for the page's next draw (:func:`_link_seeded`)."""
    ss = st.session_state
    for key in keys.values():
        first = ss.get(f"{key}_first")
        if first is not None:
            ss[key] = first
    ss[store] = {k: qp[k] for k in keys if k in qp}


def compare_widget(param: str, layer: str | None, options: list[Any] | None, default: Any) -> str:
    """Key of the compare control behind ``param``: its default remembered (``<key>_first``, for the URL
    and history steps), seeded once from the URL (a value it cannot take is named and left out)."""
    key = compare_key(param, layer)
    _link_seeded(key, "nav_cmp_url", param, options, default, COMPARE_MODES if param == "mode" else None)
    return key


def _link_seeded(
    key: str,
    store: str,
    param: str,
    options: list[Any] | None,
    default: Any,
    words: dict[str, Any] | None = None,
) -> None:
    """Seed widget ``key`` once from the link's ``param`` (kept under ``store`` by
    :func:`init_from_query_params`; ``words``: the URL's text -> the widget's value, where they differ);
    else a widget left at its default follows ``default`` (which may change with the unit or layer
    shown). ``<key>_first`` remembers the default for the URL."""
    ss = st.session_state
    untouched = key not in ss or ss[key] == ss.get(f"{key}_first")
    ss[f"{key}_first"] = default
    raw = ss.get(store, {}).pop(param, None)
    value = words.get(raw) if words is not None and raw is not None else raw
    if value is not None and (options is None or value in options):
        ss[key] = value
        return
    if raw is not None:  # said, not dropped in silence (as the grid's)
        valid = list(words) if words is not None else options
        offered = f" (this page offers: {', '.join(map(str, valid))})" if valid and len(valid) <= 12 else ""
        notice(f"The link's {param}={raw!r} is not one this page can show{offered}; it is left out.")
    if untouched or (options is not None and ss[key] not in options):
        ss[key] = default


def compare_params() -> dict[str, str]:
    """The compare page's choices that differ from their defaults, as query parameters; the other run
    (``vs``) always, while two runs are compared: its default is whichever sibling comes first, so a shared
    link would compare with another run once a new sibling appears."""
    keys = {param: compare_key(param, get("layer")) for param in COMPARE_PARAMS}
    labels = {label: mode for mode, label in COMPARE_MODES.items()}
    out = _changed_params(keys, {"mode": labels.get})
    other, mode = st.session_state.get(keys["vs"]), st.session_state.get(keys["mode"])
    if other is not None and mode != COMPARE_MODES["methods"]:
        out = {"vs": str(other), **out}
    return out


def audit_widget(param: str, options: list[Any], default: Any) -> str:
    """Key of the audit control behind ``param`` (``pictures``, ``all``, ``flag``), seeded once from the
    URL; a value the control cannot take is named and left out."""
    key = AUDIT_PARAMS[param]
    _link_seeded(key, "nav_audit_url", param, options, default, AUDIT_SCOPE if param == "all" else None)
    return key


def audit_params() -> dict[str, str]:
    """The audit page's choices that differ from their defaults, as query parameters."""
    scope = {value: text for text, value in AUDIT_SCOPE.items()}
    return _changed_params(AUDIT_PARAMS, {"all": scope.get})


def _changed_params(keys: dict[str, str], encode: dict[str, Any]) -> dict[str, str]:
    """Query parameter -> text for the widgets ``keys`` whose value differs from its default
    (``<key>_first``); ``encode``: per parameter, the value's text in the URL (None: left out)."""
    ss, out = st.session_state, {}
    for param, key in keys.items():
        value = ss.get(key)
        if value is None or value == ss.get(f"{key}_first"):
            continue
        text = encode[param](value) if param in encode else str(value)
        if text is not None:
            out[param] = str(text)
    return out


def _seed_unit_page(qp: dict[str, str]) -> None:
    st.session_state["unit_outline_cell"] = qp.get("frame") != "0"
    if any(k in qp for k in GRID_RETURN_KEYS):  # opened from a grid tile: that grid is the one to return to
        _seed_grid(qp)
        st.session_state["nav_grid_return"] = {k: qp[k] for k in GRID_RETURN_KEYS if k in qp}
    else:  # opened from another page (or a permalink): no grid order to step through
        st.session_state.pop("nav_grid_return", None)


def _seed_console(qp: dict[str, str]) -> None:
    """The console as a history step's URL has it: its ``q`` (an example's text names that example; the
    user's own text is kept as theirs), or the first example for a URL without one."""
    ss = st.session_state
    ss.pop("sql_result", None)  # run what the box will show
    console_from_url(qp.get("q"))


def console_from_url(query: str | None) -> None:
    """The console's box and example picker as a URL's ``q`` has them: an example's text names that
    example, the user's own text is kept as theirs; none is the first example."""
    ss = st.session_state
    if query:
        ss["sql_example"], ss["sql_text"] = example_of(query), query
        if ss["sql_example"] == OWN_QUERY:
            ss["sql_own_text"] = query
    else:
        ss["sql_example"], ss["sql_text"] = FIRST_EXAMPLE, example_text(FIRST_EXAMPLE)


def example_text(name: str) -> str | None:
    """Example query ``name`` for the page's layer and unit (fc8 and 0 when none is chosen)."""
    template = data.EXAMPLE_QUERIES.get(name)
    if template is None:
        return None
    layer = get("layer") or "fc8"
    unit = get("unit") if get("unit") is not None else 0
    return template.format(layer=layer, unit=unit)


def example_of(sql: str) -> str:
    """The example whose query is ``sql`` for some layer and unit, else "your query". Any layer: the
    console's URL carries its query, not the layer it was written for (a trial reloaded conv3's example on
    a session of fc8 and got it back as "your query")."""
    matches = (name for name, text in data.EXAMPLE_QUERIES.items() if _example_pattern(text).fullmatch(sql))
    return next(matches, OWN_QUERY)


@functools.cache
def _example_pattern(template: str) -> re.Pattern[str]:
    """An example query's template as a pattern: its text, any layer, any unit number."""
    pattern = re.escape(template).replace(r"\{layer\}", "(.+?)").replace(r"\{unit\}", r"(-?\d+)")
    return re.compile(pattern, re.DOTALL)


def notice(message: str) -> None:
    """Say ``message`` once, above the next page drawn (e.g. a stale link's layer that no longer exists)."""
    said = st.session_state.get("nav_notice")
    st.session_state["nav_notice"] = f"{said} {message}" if said else message  # a link can be stale twice


def take_notice() -> str | None:
    return st.session_state.pop("nav_notice", None)


def get(name: str) -> Any:
    return st.session_state.get(f"nav_{name}")


def set_(name: str, value: Any) -> None:
    key = f"nav_{name}"
    st.session_state[key] = value
    widget = WIDGETS.get(key)
    if widget is not None:
        st.session_state[widget] = value


def go(**changes: Any) -> None:
    """Button callback: change layer / unit / run / grid_page on this page (links switch pages:
    :func:`link_params`)."""
    st.session_state.pop(LAYER_PICKED, None)  # a link's unit is checked against its layer again
    for name, value in changes.items():
        set_(name, value)
        if name == "layer":
            set_("grid_page", 0)


def take_pending() -> str | None:
    """The page a callback or a legacy ``?page=`` link asked for (once)."""
    return st.session_state.pop("nav_pending", None)


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
        st.session_state[LAYER_PICKED] = True  # a unit page then shows the layer's first unit, no warning


LAYER_PICKED = "nav_layer_picked"  # set when the user picks a layer in the sidebar (not a link's layer)
ALL_LAYER_PAGES = ("overview", "sql")  # pages about every layer: a layer picked there opens its grid


def layer_from_sidebar() -> None:
    """The sidebar's layer picker: the navigation state's layer; on a page about every layer (the overview,
    the SQL console) the picked layer's grid opens, since that page has no one layer to show."""
    from_widget("layer")
    if get("page") in ALL_LAYER_PAGES:
        st.session_state["nav_pending"] = "layer"


def layer_just_picked() -> bool:
    """Did the user pick the layer in the sidebar since the last call (once)?"""
    return bool(st.session_state.pop(LAYER_PICKED, False))


def grid_widget(param: str, options: list[Any] | None = None) -> str:
    """Key of the grid widget behind query parameter ``param``, seeded once from the session's first URL
    (a value the widget cannot take is dropped: the widget keeps its default)."""
    key, default = GRID_PARAMS[param]
    raw = st.session_state.get("nav_grid_url", {}).pop(param, None)
    if raw is not None:
        given = GRID_URL_WORDS.get(param, {}).get(raw, raw)
        value: Any = _int(given, None) if isinstance(default, int) else given
        if value is not None and (options is None or value in options):
            st.session_state[key] = value
        else:  # said, not dropped in silence: a filter lost turns the grid into "all units"
            offered = ", ".join(url_word(param, o) for o in options) if options and len(options) <= 12 else ""
            valid = f" (this grid offers: {offered})" if offered else ""
            notice(f"The link's {param}={raw!r} is not one this grid can show{valid}; it is left out.")
    return key


def url_word(param: str, value: Any) -> str:
    """How grid parameter ``param`` writes ``value`` in a link (:data:`GRID_URL_WORDS`)."""
    words = {label: word for word, label in GRID_URL_WORDS.get(param, {}).items()}
    return words.get(value, str(value))


def grid_return_params() -> dict[str, str]:
    """The grid's page, sort and filters for the links of its tiles. A tile's link loads the unit page in
    a new session, which seeds the grid from them (:func:`init_from_query_params`), so its grid button
    returns to the grid as it was; its URL keeps them while it shows units (:func:`params_for`: dropped,
    the rewritten URL was one more history entry, and Back from the unit page led to itself) until the
    grid is drawn (:func:`grid_drawn`)."""
    page = get("grid_page")
    return {**({"p": str(int(page) + 1)} if page else {}), **grid_params()}


GRID_ORDER_PARAMS = (
    "sort",
    "units",
    "facets",
    "judge",
    "label",
    "flag",
    "natural",
)  # which units, in which order


def grid_link_choices() -> dict[str, Any]:
    """The sort and filters of the grid a unit page was opened from, as its widgets take them (param ->
    value), from the grid parameters the page's URL carries (:func:`grid_return_params`); {} when it
    carries none (a permalink): the page then steps through the layer by unit number."""
    brought = st.session_state.get("nav_grid_return") or {}
    out: dict[str, Any] = {}
    for param in GRID_ORDER_PARAMS:
        if param in brought:
            raw = brought[param]
            given = GRID_URL_WORDS.get(param, {}).get(raw, raw)
            out[param] = _int(given, 0) if isinstance(GRID_PARAMS[param][1], int) else given
    return out


def grid_drawn() -> None:
    """The grid took the parameters a tile's link brought (its widgets hold them now)."""
    st.session_state.pop("nav_grid_return", None)


def grid_params() -> dict[str, str]:
    """The grid's sort and filters that differ from their defaults, as query parameters."""
    out = {}
    for param, (key, default) in GRID_PARAMS.items():
        value = st.session_state.get(key)
        first = st.session_state.get(f"{key}_first")  # the sort's default: its first option
        if value is not None and value != default and not (default is None and value == first):
            out[param] = url_word(param, value)
    return out


def params_for(page: str, multi_run: bool) -> dict[str, str]:
    """The query parameters of ``page`` in the current state (only those that apply to it)."""
    params: dict[str, str] = {}
    if multi_run and get("run"):
        params["run"] = str(get("run"))
    if get("layer") is not None and page != "sql":
        params["layer"] = str(get("layer"))
    if page in ("unit", "compare") and get("unit") is not None:
        params["unit"] = str(get("unit"))
    own = {
        "layer": _grid_page_params,  # the grid's own page, sort and filters
        "compare": compare_params,
        "audit": audit_params,
        "unit": _unit_params,
        "sql": _console_params,
    }.get(page)
    return {**params, **(own() if own else {})}


def link_params(
    page: str, multi_run: bool, layer: str | None = None, unit: int | None = None
) -> dict[str, str]:
    """The query parameters of an ``st.page_link`` to ``page`` showing ``layer`` and ``unit`` (the
    session's where None): :func:`params_for` with those changed. Another layer's grid opens at its first
    page; a unit opened from another page steps through its layer by unit number (no grid to return to).
    A link switches page and URL in one history entry, where a button's page switch left two."""
    params = params_for(page, multi_run)
    if layer is not None and layer != get("layer"):
        params["layer"] = layer
        params.pop("p", None)
    if unit is not None:
        params["unit"] = str(unit)
    if page == "unit" != get("page"):
        params = {k: v for k, v in params.items() if k not in GRID_RETURN_KEYS}
    return params


def _grid_page_params() -> dict[str, str]:
    """The grid's URL: its page, sort and filters; those a tile's link brought while the grid has not been
    drawn in this session (its widgets take them when it is). Read from the widgets alone, a unit page's
    grid button switched to the grid's defaults first, and that URL was a history entry Back showed (a
    user's trial: the grid "with its filters dropped"). A tile's link names the default sort too (the unit
    page then steps in the grid's order); the grid leaves it out of its URL, and so does this."""
    brought = st.session_state.get("nav_grid_return")
    if not brought:
        return grid_return_params()
    default_sort = url_word("sort", next(iter(data.SORTS)))  # every grid's first sort
    return {k: v for k, v in brought.items() if not (k == "sort" and v == default_sort)}


def _unit_params() -> dict[str, str]:
    """The unit page's own parameters: its frame toggle, and the grid the tile that opened the session's
    unit page was on (:func:`grid_return_params`)."""
    frame = {"frame": "0"} if st.session_state.get("unit_outline_cell") is False else {}
    return {**frame, **(st.session_state.get("nav_grid_return") or {})}


def _console_params() -> dict[str, str]:
    """The console's query, but for the example it opens with: a picked example is in the URL too (a
    user's trial reloaded one and got the first example back)."""
    ss = st.session_state
    return {"q": str(ss["sql_text"])} if ss.get("sql_example") != FIRST_EXAMPLE and ss.get("sql_text") else {}


def sync_query_params(multi_run: bool) -> None:
    """Write the navigation state to the URL's query string (the page is the URL path)."""
    params = params_for(get("page"), multi_run)
    if _url_params() != params:
        st.query_params.from_dict(params)
    st.session_state["nav_synced"] = params  # what follow_history compares the next run's URL with


def link(
    page: str,
    layer: str | None = None,
    unit: int | None = None,
    run: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """A relative, URL-encoded deep link: ``unit?layer=fc8&unit=7`` (``./?...`` for the overview);
    ``extra``: more query parameters (a grid tile's: the grid's own, :func:`grid_return_params`)."""
    params = {"run": run, "layer": layer, "unit": unit, **(extra or {})}
    query = urlencode({k: str(v) for k, v in params.items() if v is not None})
    base = url_path(page) or "./"
    return f"{base}?{query}" if query else base
