"""`atlas export`: a run's pictures as plain files to share without Python, Streamlit or the run's store: for
each layer every unit's picture as the PNG it is stored as, labelled contact sheets of them, and one static
``index.html`` over it all. The units, their order and their pictures are the layer grid's
(:mod:`viewer.data`).

The folder is built beside ``out`` and moved into place when whole, so a failed or interrupted export leaves
``out`` as it was; a folder an earlier export wrote (it holds :data:`MARKER`) is replaced, any other folder
with files in it is refused.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from atlas.contact_sheet import Tile, contact_sheet, save_sheet
from atlas.errors import AtlasError, ConfigError
from atlas.process import pid_alive
from atlas.store.png import png_problem
from atlas.tables import counted
from viewer import data
from viewer.export.site import SiteLayer, SiteTile, index_html

MARKER = "atlas-export.json"  # what an export writes last; a folder holding it may be replaced
SORTS = dict(data.SORT_WORDS)  # --sort -> the layer grid's order (the label orders: a run with labels)
QUERY_PAGE = 512  # units read per query
PROGRESS_EVERY_S = 10.0  # a progress line inside a long layer at most this often


@dataclass(frozen=True)
class ExportRequest:
    run: str  # a run directory or URI
    out: Path  # a local folder
    layers: tuple[str, ...] = ()  # () = every layer, in the config's order
    units: str = ""  # "3, 10-20" (per layer); "" = every unit
    picture: str = "best"  # data.PICTURES
    sort: str = "unit"  # SORTS
    columns: int = 10  # tiles a row on a contact sheet
    per_sheet: int = 100  # units a contact sheet
    tile_px: int = 96  # a picture's side on a contact sheet
    scale: int = 1  # each unit's PNG this many times its stored size, nearest-neighbour (1: as stored)


@dataclass
class ExportReport:
    out: Path
    layers: list[tuple[str, int, int]] = field(default_factory=list)  # (layer, units, contact sheets)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (layer, why nothing of it is exported)

    @property
    def units(self) -> int:
        return sum(n for _, n, _ in self.layers)


def folder_name(layer: str) -> str:
    """A layer's folder: its name with anything but letters, digits, ``.``, ``_`` and ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer).lstrip(".") or "layer"


def check_out(out: Path, run: str) -> None:
    """``out`` can take the export: not a file, not inside the run, empty or an earlier export; one line
    naming ``--out`` otherwise."""
    from atlas.atomic import check_writable_dir

    here = Path(os.path.abspath(out))
    if here == Path.cwd() or here in Path.cwd().parents:  # it is replaced whole: not under the user's feet
        raise AtlasError(f"--out: {out} holds the current folder; give a folder to write, e.g. demo-atlas")
    if out.exists() and not out.is_dir():
        raise AtlasError(f"--out: {out} is a file; give a folder for the exported atlas")
    if out.is_dir() and os.path.ismount(out):  # replaced whole by a rename, which a mount point refuses
        raise AtlasError(
            f"--out: {out} is a mount point, and an export replaces its folder whole; give a folder inside "
            f"it, e.g. {out / 'atlas'}"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise AtlasError(
            f"--out: {out} holds other files and no earlier export ({MARKER}); give a new or empty folder"
        )
    if "://" not in run or run.startswith("file://"):
        run_dir = Path(os.path.abspath(Path(run.removeprefix("file://")).expanduser()))
        if here == run_dir or run_dir in here.parents:
            raise AtlasError(f"--out: {out} is inside the run {run}; export it to a folder outside the run")
    check_writable_dir(out.parent, "--out")


def _layers(conn: Any, wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(the layers to export, the planned ones among them that no completed shard holds yet): the run's
    layers in its config's order, or ``wanted`` (each checked against the config's)."""
    config = data.run_info(conn).get("config")
    have = [name for name, _ in data.layers(conn, config)]
    planned = _planned_layers(config)
    known = have + [name for name in planned if name not in have]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise AtlasError(f"--layers: the run has no layer {unknown[0]!r}; its layers are {', '.join(known)}")
    chosen = list(dict.fromkeys(wanted)) if wanted else known
    return [n for n in chosen if n in have], [n for n in chosen if n not in have]


def _planned_layers(config: Any) -> list[str]:
    """The layer names a run's config lists (``layers``: entries with a ``name``, or a name -> count map)."""
    entries = config.get("layers") if isinstance(config, dict) else None
    if isinstance(entries, dict):
        return [str(name) for name in entries]
    return [str(e["name"]) for e in entries or [] if isinstance(e, dict) and e.get("name")]


def _number(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3g}"


def _caption(rec: dict[str, Any], picture: str, labels: bool) -> tuple[str, ...]:
    """A unit's caption lines: its name, the shown picture's activation, its label (runs with labels); a
    failed unit's error."""
    name = data.unit_name(int(rec["unit"]), rec.get("composite"))
    if rec.get("status") == "error":
        return (name, f"failed: {rec.get('error') or 'no error recorded'}")
    act = rec.get("best_activation") if picture == "best" else rec.get("picture_activation")
    lines = [name, f"act {_number(act)}"]
    if labels:  # the AUROC on a line of its own: after the label, a sheet's tile cut it off
        label = rec.get("label")
        lines += (
            [label, f"AUROC {data.fmt_auroc(rec.get('label_score'))}"]
            if isinstance(label, str)
            else ["no label · silent" if data.is_silent(rec) else "no label"]  # as the grid's tile says
        )
    return tuple(lines)


def _unit_records(conn: Any, query: data.GridQuery) -> list[dict[str, Any]]:
    """Every unit the grid query selects, in its order, with its picture (a page of units at a time)."""
    out: list[dict[str, Any]] = []
    for page in range(math.ceil(data.grid_count(conn, query) / QUERY_PAGE)):
        page_query = data.GridQuery(**{**query.__dict__, "page": page, "page_size": QUERY_PAGE})
        out += data.grid_page(conn, page_query).to_dict("records")
    return out


def _export_layer(
    conn: Any,
    req: ExportRequest,
    layer: str,
    units: tuple[tuple[int, int], ...],
    staging: Path,
    labels: bool,
    say: Callable[[str], None],
    heading: str = "",
) -> SiteLayer | None:
    """One layer's PNGs and contact sheets under ``staging``; its part of the page (None: no unit). A long
    layer says how far it is every :data:`PROGRESS_EVERY_S`. ``heading`` (the run and its method) starts
    each sheet's title: sheets of two methods' runs looked alike (a trial)."""
    records = _unit_records(
        conn, data.GridQuery(layer=layer, sort=SORTS[req.sort], units=units, picture=req.picture)
    )
    if not records:
        return None
    folder = folder_name(layer)
    (staging / folder).mkdir(parents=True, exist_ok=True)
    tiles, site_tiles = [], []
    for rec in records:
        caption = _caption(rec, req.picture, labels)
        href = None
        if rec.get("png") is not None:
            if png_problem(rec["png"]) is not None:  # a damaged images file the quick `atlas verify` passes
                raise AtlasError(
                    f"run {req.run} is damaged: {layer} unit {int(rec['unit'])}'s {req.picture} picture does "
                    f"not decode as a PNG; `atlas verify {req.run} --deep --repair` finds its shard, and the "
                    "same `atlas run` redoes it"
                )
            href = f"{folder}/unit-{int(rec['unit'])}.png"  # unpadded: the same name in every run and layer
            # as stored: the picture the run kept, not redrawn; --scale N: each pixel an N x N block
            (staging / href).write_bytes(_scaled(rec["png"], req.scale))
        failed = rec.get("status") == "error"
        tiles.append(Tile(rec.get("png"), caption, "failed" if failed else "no image"))
        site_tiles.append(SiteTile(href, caption[0], caption[1:], failed))
    sheets = []
    said = time.monotonic()
    for i in range(0, len(tiles), req.per_sheet):
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            say(f"{layer}: {i} of {len(tiles)} units on contact sheets")
            said = time.monotonic()
        chunk = records[i : i + req.per_sheet]
        ids = data.format_units(sorted(int(r["unit"]) for r in chunk))
        title = f"{heading}{layer} · units {ids} · {req.picture} pictures"
        name = f"{folder}/sheet-{i // req.per_sheet + 1:02d}.png"
        columns = min(req.columns, len(records))  # 4 units: 4 columns, not 10 with 6 blank (a trial)
        sheet = contact_sheet(tiles[i : i + req.per_sheet], columns=columns, tile_px=req.tile_px, title=title)
        save_sheet(sheet, staging / name)
        sheets.append(name)
    summary = (
        f"{len(records)} unit{'s' if len(records) != 1 else ''} · {req.picture} pictures · by {req.sort}"
    )
    return SiteLayer(layer, folder, summary, tuple(sheets), tuple(site_tiles))


def _scaled(png: bytes, scale: int) -> bytes:
    """``png`` as it is (``scale`` 1), or ``scale`` times as large with every pixel a block (a lecturer's
    slides: a 32 px picture); bytes that do not decode stay as they are."""
    if scale == 1:
        return png
    try:
        with Image.open(io.BytesIO(png)) as im:
            big = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
            out = io.BytesIO()
            big.save(out, format="PNG")
            return out.getvalue()
    except (OSError, ValueError):
        return png


def _move_into_place(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; an earlier export there is removed once the new one is in place. Ctrl-C
    and SIGTERM wait until both renames are done (one between them left the earlier export beside the new
    one, in a hidden folder: a trial) and are answered right after; the old folder's removal may be cut
    (the next export to ``out`` removes what is left: :func:`remove_left_behind`)."""
    old = out.with_name(f"{_hidden_prefix(out, 'old')}{uuid.uuid4().hex[:8]}") if out.exists() else None
    with _signals_held():
        if old is not None:
            os.replace(out, old)
        os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM recorded, not acted on, inside the block (Python runs handlers in the main thread
    whichever thread the signal reached, which blocking it there does not stop: DuckDB's threads took it in
    a review), then sent again to this process's handlers as they were."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {k: signal.signal(k, lambda signum, _frame: came.append(signum)) for k in kinds}
    try:
        yield
    finally:
        for k, handler in before.items():
            signal.signal(k, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)


def _hidden_prefix(out: Path, kind: str) -> str:
    """The start of the name of an export's hidden staging (``kind`` "export") or old (``"old"``) folder
    beside ``out``: the host and process that made it, so that only its own host judges it left behind
    (``out`` on a mount that several machines share)."""
    return f".{out.name}.{kind}-{socket.gethostname()}-{os.getpid()}-"


def remove_left_behind(out: Path) -> list[Path]:
    """Remove the hidden staging and old folders of earlier exports to ``out`` made on this host by a process
    that is gone (killed before its clean-up ran: SIGKILL, a power cut); a live export's, and another host's,
    are kept. Returns those removed."""
    removed = []
    host = socket.gethostname()
    for kind in ("export", "old"):
        start = f".{out.name}.{kind}-{host}-"
        for path in out.parent.glob(f"{glob.escape(start)}*"):
            pid, _, tag = path.name.removeprefix(start).partition("-")
            ours = pid.isdigit() and re.fullmatch(r"[0-9a-f]{8}", tag) is not None and path.is_dir()
            if not ours or pid_alive(int(pid)):  # this process's own too
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def export_run(req: ExportRequest, say: Callable[[str], None] = print) -> ExportReport:
    """Write the export of ``req.run`` to ``req.out`` (see the module docstring); ``say`` gets a line per
    layer."""
    from atlas.store.catalog import open_run

    check_out(req.out, req.run)
    try:
        units = data.parse_units(req.units)
    except ConfigError as exc:
        raise AtlasError(f"--units: {str(exc).removeprefix('units: ')}") from None
    conn = open_run(req.run)
    out = Path(os.path.abspath(req.out))
    staging = out.with_name(f"{_hidden_prefix(out, 'export')}{uuid.uuid4().hex[:8]}")
    try:
        layers, not_yet = _layers(conn, req.layers)
        have = data.truth(conn)
        labels = have.labels
        plain = ", ".join(
            w for w, o in SORTS.items() if o not in data.LABEL_SORTS and o not in data.FLAG_SORTS
        )
        if SORTS[req.sort] in data.LABEL_SORTS and not labels:
            raise AtlasError(f"--sort {req.sort}: this run has no concept labels; sort by {plain}")
        if SORTS[req.sort] in data.FLAG_SORTS and not have.pictures:
            raise AtlasError(f"--sort {req.sort}: this run has no picture flags; sort by {plain}")
        info = data.run_info(conn)
        report = ExportReport(req.out, skipped=[(layer, "no unit done yet") for layer in not_yet])
        site: list[SiteLayer] = []
        staging.mkdir(parents=True)
        name = str(info.get("name") or Path(req.run.rstrip("/")).name)
        heading = f"{name} · {_method(conn)} · "
        for layer in layers:
            part = _export_layer(conn, req, layer, units, staging, labels, say, heading)
            if part is None:
                report.skipped.append((layer, "no unit in --units"))
                continue
            site.append(part)
            report.layers.append((layer, len(part.tiles), len(part.sheets)))
            sheets = counted(len(part.sheets), "contact sheet")
            asked = data.expand_units(units, 0)[1] if units else 0
            short = (  # --units past the layer's units: said, as the grid says it (a trial saw 10 of 0-99999)
                f" (of {asked:,} --units asked; the layer holds units "
                f"{data.compact_units(data.unit_ids(conn, layer))})"
                if len(part.tiles) < asked
                else ""
            )
            say(f"{layer}: {counted(len(part.tiles), 'unit')}{short}, {sheets}")
        named = ", ".join(layers + not_yet)
        if not site and not req.units:
            status = info.get("status") or "unknown"
            raise AtlasError(
                f"run {req.run}: no unit of {named or 'the run'} is done yet (status {status}); export it "
                "once `atlas run` has completed shards"
            )
        if not site:  # the units each layer holds (a trial read min-max 0-13 for a run of 0-4 and 10-13)
            held = "; ".join(f"{la} holds {data.compact_units(data.unit_ids(conn, la))}" for la in layers)
            have = f" ({held})" if held else ""
            raise AtlasError(
                f"--units: {req.units!r} selects no unit of {named}; give units the layers have{have}"
            )
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta = [
            f"run {req.run} · status {info.get('status') or '–'} · method {_method(conn)}",
            f"exported by atlas export on {when}: each unit's most activating {req.picture} picture, "
            f"by {req.sort}" + (" · a label's number is its AUROC on natural images" if labels else ""),
        ]
        meta += _partial_line(info, not_yet)
        (staging / "index.html").write_text(index_html(f"atlas · {name}", meta, site), encoding="utf-8")
        # what a pipeline reads back (a trial): the run as a full path, its state when exported (a partial
        # atlas said so only on the page), the export's settings, and "all" for every unit
        done, planned = info.get("shards_done"), info.get("planned_shards")
        marker = {
            "run": str(req.run) if "://" in str(req.run) else os.path.abspath(req.run),
            "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "run_status": info.get("status"),
            "shards_done": None if done is None else int(done),
            "planned_shards": None if planned is None else int(planned),
            "method": _method(conn),
            "picture": req.picture,
            "sort": req.sort,
            "units": req.units or "all",
            "layers": [layer for layer, _, _ in report.layers],
            "layers_not_done": not_yet,
            "columns": req.columns,
            "per_sheet": req.per_sheet,
            "tile_px": req.tile_px,
            "scale": req.scale,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        _move_into_place(staging, out)
        remove_left_behind(out)  # after the new export is in place: a killed one's old copy stays till then
        return report
    finally:
        conn.close()
        shutil.rmtree(staging, ignore_errors=True)


def _partial_line(info: dict[str, Any], not_yet: list[str]) -> list[str]:
    """The page of a run exported before it completed says so (its terminal line did; the page read as a
    whole atlas): the shards done of those planned, and the layers with no unit yet."""
    status = info.get("status")
    if status == "complete" and not not_yet:
        return []
    done, planned = info.get("shards_done"), info.get("planned_shards")
    shards = (
        f"{int(done)} of {int(planned)} shards done" if done is not None and planned else "shards still to do"
    )
    missing = f"; no unit done yet in {', '.join(not_yet)}" if not_yet else ""
    return [f"a partial atlas: the run was {status or 'unfinished'} when exported ({shards}){missing}"]


def _method(conn: Any) -> str:
    methods = data.fetch_frame(conn, "SELECT DISTINCT method FROM units WHERE method IS NOT NULL ORDER BY 1")
    return ", ".join(str(m) for m in methods["method"]) or "–"
