"""`atlas export` and its contact sheets, on a small synthetic run: the files are checked against the Parquet
tables read back with pandas, not against the export's own queries."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from atlas.bench.synthetic_run import make_synthetic_run
from atlas.cli import main
from atlas.contact_sheet import Tile, contact_sheet, font
from viewer.export import MARKER, ExportRequest, export_run

pytestmark = pytest.mark.unit

LAYERS = {"fc8": 10, "conv3": 12}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    make_synthetic_run(run_dir, layers=LAYERS, chains=2, steps=40, images_per_chain=4, real_k=3)
    return run_dir


def written(run_dir, table: str, layer: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / table / f"layer={layer}")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors (a bad choice, a number out of range)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def tiles_in(page: str) -> list[tuple[str, str]]:
    """(picture href, caption title) of each tile of index.html, in page order."""
    return re.findall(r"<figure><a href='([^']+)'>.*?<figcaption title='([^']+)'>", page)


@pytest.mark.parametrize("picture", ["best", "last"])
def test_every_unit_exported_as_its_stored_png_with_sheets_and_page(run, tmp_path, capsys, picture):
    out = tmp_path / "atlas"
    code, text, err = cli(
        capsys, "export", str(run), "--out", str(out), "--picture", picture, "--per-sheet", "8"
    )
    assert code == 0, err
    assert f"wrote {out}: 22 units of 2 layers" in text
    page = (out / "index.html").read_text()
    assert "partial atlas" not in page  # a complete run
    hrefs = [href for href, _ in tiles_in(page)]
    assert hrefs[:10] == [f"fc8/unit-{u}.png" for u in range(10)]  # the config's layer order, by unit
    assert hrefs[10:] == [f"conv3/unit-{u}.png" for u in range(12)]  # unpadded in every layer
    for layer in LAYERS:
        images = written(run, "images", layer)
        for unit in range(LAYERS[layer]):
            mine = images[(images["unit"] == unit) & (images["kind"] == picture)]
            kept = mine.loc[mine["activation"].idxmax(), "png"]  # the unit's most activating picture
            assert (out / layer / f"unit-{unit}.png").read_bytes() == kept
        sheets = sorted((out / layer).glob("sheet-*.png"))
        assert [s.name for s in sheets] == [
            f"sheet-{i:02d}.png" for i in range(1, -(-LAYERS[layer] // 8) + 1)
        ]
        with Image.open(sheets[0]) as im:
            assert im.width > 8 * 96 and im.height > 96  # 8 tiles of 96 px a row, captions under them
    assert json.loads((out / MARKER).read_text())["picture"] == picture
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_sort_units_and_layers_select_and_order_like_the_grid(run, tmp_path):
    out = tmp_path / "atlas"
    req = ExportRequest(str(run), out, layers=("conv3",), units="2-9", sort="activation")
    report = export_run(req, say=lambda _: None)
    assert report.layers == [("conv3", 8, 1)]
    units = written(run, "units", "conv3")
    units = units[units["unit"].between(2, 9)].sort_values(
        ["best_activation", "unit"], ascending=[False, True]
    )
    titles = [title for _, title in tiles_in((out / "index.html").read_text())]
    assert titles == [f"unit {u}" for u in units["unit"]]
    assert sorted(p.name for p in (out / "conv3").glob("unit-*.png")) == [
        f"unit-{u}.png" for u in range(2, 10)
    ]
    assert not (out / "fc8").exists()
    said = []  # --units past the layer (conv3: 0-11): exported what it holds, and said so
    wide = ExportRequest(str(run), tmp_path / "wide", layers=("conv3",), units="0-99999")
    assert export_run(wide, say=said.append).layers == [("conv3", 12, 1)]
    assert "conv3: 12 units (of 100,000 --units asked; the layer holds units 0-11), 1 contact sheet" in said


def test_the_weakest_sort_puts_the_least_activating_units_first(run, tmp_path):
    out = tmp_path / "weak"
    export_run(ExportRequest(str(run), out, layers=("conv3",), sort="weakest"), say=lambda _: None)
    units = written(run, "units", "conv3").sort_values(["best_activation", "unit"], ascending=[True, True])
    assert [t for _, t in tiles_in((out / "index.html").read_text())] == [f"unit {u}" for u in units["unit"]]


def test_label_sorts_order_by_the_label_and_need_a_run_with_labels(run, tmp_path, capsys):
    """The grid's two label sorts, which docs/viewer.md says `--sort` takes, were refused as choices."""
    out = tmp_path / "atlas"
    export_run(ExportRequest(str(run), out, layers=("conv3",), sort="label-score"), say=lambda _: None)
    units = written(run, "units", "conv3").sort_values(["label_score", "unit"], ascending=[False, True])
    titles = [title for _, title in tiles_in((out / "index.html").read_text())]
    assert titles == [f"unit {u}" for u in units["unit"]]
    plain = tmp_path / "plain"
    make_synthetic_run(plain, layers={"fc8": 4}, chains=1, steps=10, truth=False)
    code, _, err = cli(capsys, "export", str(plain), "--out", str(tmp_path / "p"), "--sort", "label-margin")
    assert code == 2 and err.strip() == (
        "atlas: error: --sort label-margin: this run has no concept labels; sort by unit, activation, "
        "weakest, selectivity, rank, facets"
    ), err
    assert not (tmp_path / "p").exists()
    export_run(ExportRequest(str(run), tmp_path / "f", layers=("conv3",), sort="flagged"), say=lambda _: None)
    code, _, err = cli(capsys, "export", str(plain), "--out", str(tmp_path / "p"), "--sort", "flagged")
    assert code == 2 and "--sort flagged: this run has no picture flags; sort by unit, activation," in err


def test_an_earlier_export_is_replaced_whole_and_a_failed_one_changes_nothing(run, tmp_path, monkeypatch):
    out = tmp_path / "atlas"
    export_run(ExportRequest(str(run), out, units="0-3"), say=lambda _: None)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "fc8" / "stale.png").write_bytes(b"old")

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("viewer.export.build.save_sheet", broken)
    with pytest.raises(OSError, match="disk full"):
        export_run(ExportRequest(str(run), out), say=lambda _: None)
    after = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert after == sorted(
        [*before, (out / "fc8" / "stale.png").relative_to(out)]
    )  # the old export, as it was
    monkeypatch.undo()
    export_run(ExportRequest(str(run), out, layers=("fc8",)), say=lambda _: None)
    assert not (out / "fc8" / "stale.png").exists() and not (out / "conv3").exists()
    assert len(list((out / "fc8").glob("unit-*.png"))) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["atlas"]  # no staging or old folder left


def test_a_terminated_export_leaves_nothing_and_a_killed_ones_leftovers_go(
    run, tmp_path, capsys, monkeypatch
):
    """``timeout`` (SIGTERM) ended an export by the signal, its staging folder left beside --out; one
    killed (SIGKILL) leaves it anyway: the next export to the same --out removes it, not a live export's
    nor another host's on a shared mount (a trial; a review)."""
    import os
    import signal
    import socket

    monkeypatch.setattr(signal, "getsignal", lambda _s: signal.SIG_DFL)  # as a fresh process (Ray sets one)
    out = tmp_path / "atlas"
    with monkeypatch.context() as m:
        m.setattr("viewer.export.build.save_sheet", lambda *_a, **_k: os.kill(os.getpid(), signal.SIGTERM))
        code, _, err = cli(capsys, "export", str(run), "--out", str(out))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert code == 143 and err.strip() == "atlas: interrupted", err
    assert list(tmp_path.iterdir()) == []
    host = socket.gethostname()
    dead = [
        tmp_path / f".atlas.export-{host}-{_ended_pid()}-0123abcd",
        tmp_path / f".atlas.old-{host}-{_ended_pid()}-89abcdef",
    ]
    live = tmp_path / f".atlas.export-{host}-{os.getppid()}-0123abcd"  # the test's parent: alive
    elsewhere = tmp_path / f".atlas.export-other-host-{_ended_pid()}-0123abcd"  # its pid means nothing here
    other = tmp_path / f".other.export-{host}-{_ended_pid()}-0123abcd"  # another --out's
    for folder in [*dead, live, elsewhere, other]:
        folder.mkdir()
    assert cli(capsys, "export", str(run), "--out", str(out))[0] == 0
    kept = sorted(["atlas", live.name, elsewhere.name, other.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == kept


def test_a_signal_during_the_swap_waits_for_it(tmp_path, monkeypatch):
    """A SIGTERM between the two renames left the earlier export in a hidden folder beside the new one (a
    trial); blocking it in the main thread did not hold it while DuckDB's threads ran (a review)."""
    import os
    import signal

    from viewer.export.build import _move_into_place

    out, staging = tmp_path / "atlas", tmp_path / "staging"
    out.mkdir()
    (out / "old.txt").write_text("earlier export")
    staging.mkdir()
    (staging / "new.txt").write_text("this export")
    real_replace, calls = os.replace, []

    def replace(a, b):  # the signal comes after the first rename
        real_replace(a, b)
        calls.append(b)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    def stop(signum, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            _move_into_place(staging, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert len(calls) == 2 and (out / "new.txt").is_file()  # both renames done before the signal acted
    assert not (out / "old.txt").exists()  # the earlier export is out of the way (its hidden folder: for
    # the next export to remove, this process being gone by then)


def _ended_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--layers", "fc9"], "--layers: the run has no layer 'fc9'; its layers are fc8, conv3"),
        (["--layers", "fc8,,conv3"], "--layers"),
        (
            ["--units", "500-600"],
            "no unit of fc8, conv3; give units the layers have (fc8 holds 0-9; conv3 holds 0-11)",
        ),
        (["--units", "5-3"], "--units: range '5-3' is empty"),
        (["--units", ""], "--units: '' names no unit"),  # an empty shell variable had exported every unit
        (["--units", " "], "leave --units out to export every unit"),
        (["--out", "{run}/pictures"], "is inside the run"),
        (["--out", "{tmp}/other"], "holds other files and no earlier export"),
        (["--out", "{tmp}/file.txt"], "is a file"),
        (["--out", ""], "--out: empty path"),
        (["--out", "."], "holds the current folder"),
        (["--out", "{tmp}/.."], "holds the current folder"),
        (["--columns", "0"], "--columns"),
        (["--tile", "4096"], "--tile"),
        (["--scale", "0"], "--scale"),
        (["--picture", "snapshot"], "--picture"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, capsys, monkeypatch, args, expect):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # an empty current folder: `--out .` is still refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    before = sorted(tmp_path.rglob("*")), sorted(run.rglob("*"))
    code, out, err = cli(capsys, "export", str(run), *args)
    assert code == 2 and "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atlas: error: ") and expect in lines[0], err
    assert (sorted(tmp_path.rglob("*")), sorted(run.rglob("*"))) == before


def test_a_run_still_running_exports_what_is_done_and_says_what_is_not(tmp_path, capsys):
    """A run being written: its completed layers are exported, the others named as not done yet; with no
    completed shard at all, one line says so (no --units was given, so none is blamed)."""
    running = tmp_path / "running"
    make_synthetic_run(running, layers={"fc8": 4, "conv3": 4}, chains=1, steps=10, units_per_shard=4,
                       max_shards=1)  # fmt: skip
    code, out, err = cli(capsys, "export", str(running), "--out", str(tmp_path / "part"))
    assert code == 0 and "4 units of 1 layer (conv3: no unit done yet)" in out, out + err
    page = (tmp_path / "part" / "index.html").read_text()  # the page says so too: it read as a whole atlas
    assert (
        "a partial atlas: the run was running when exported (1 of 2 shards done); no unit done yet in conv3"
        in page
    )
    record = json.loads((tmp_path / "part" / MARKER).read_text())  # a pipeline reads the same (a trial)
    assert {k: record[k] for k in ("run_status", "shards_done", "planned_shards", "layers_not_done")} == {
        "run_status": "running",
        "shards_done": 1,
        "planned_shards": 2,
        "layers_not_done": ["conv3"],
    }
    assert record["units"] == "all" and record["run"] == str(running) and record["layers"] == ["fc8"]
    assert record["exported"].endswith("+00:00") and record["tile_px"] == 96
    code, out, err = cli(capsys, "export", str(running), "--out", str(tmp_path / "p2"), "--units", "99")
    assert code == 2 and "--units: '99' selects no unit of fc8, conv3;" in err, err
    empty = tmp_path / "empty"
    make_synthetic_run(empty, layers={"fc8": 4}, chains=1, steps=10, max_shards=0)
    code, out, err = cli(capsys, "export", str(empty), "--out", str(tmp_path / "none"))
    assert code == 2 and err.count("\n") == 1 and "no unit of fc8 is done yet (status running)" in err, err
    assert "--units" not in err and not (tmp_path / "none").exists()


def test_the_commands_choices_are_the_exports():
    from atlas.commands import export as command
    from viewer import data, export

    assert tuple(export.SORTS) == command.SORTS and tuple(data.PICTURES) == command.PICTURES


def test_contact_sheet_draws_pictures_captions_and_missing_tiles():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    png = io.BytesIO()
    Image.fromarray(red).save(png, format="PNG")
    tiles = [
        Tile(red, ("unit 0", "a caption far too long to fit under one small tile, cut with an ellipsis")),
        Tile(png.getvalue(), ("unit 1",)),
        Tile(None, ("unit 2",), "failed"),
        Tile(b"not a png", ("unit 3",)),  # damaged bytes: drawn as missing, not an error
    ]
    sheet = np.asarray(contact_sheet(tiles, columns=3, tile_px=48, title="fc8", row_labels=["a", "b"]))
    assert sheet.shape[1] > 3 * 48 and sheet.shape[0] > 2 * 48
    reds = (sheet[..., 0] == 255) & (sheet[..., 1] == 0) & (sheet[..., 2] == 0)
    assert reds.sum() == 2 * 48 * 48  # both red pictures, scaled to 48 px; the others are no red
    title = "fc8 · units 0-99 · best pictures"  # a trial's --tile 40 sheet cut it to "fc8 · units 0-…"
    narrow = contact_sheet(tiles[:2], columns=2, tile_px=40, title=title)
    draw = ImageDraw.Draw(narrow)
    assert narrow.width >= draw.textlength(title, font=font(max(10, min(16, 40 // 8)) + 4))


def test_a_labelled_units_caption_gives_its_auroc_as_the_viewer_does(run, tmp_path, capsys):
    """Three decimals on a line of its own (after the label, a contact sheet's tile cut it off)."""
    out = tmp_path / "labelled"
    assert cli(capsys, "export", str(run), "--out", str(out), "--layers", "fc8")[0] == 0
    units = written(run, "units", "fc8").set_index("unit")
    page = (out / "index.html").read_text()
    labelled = units[units["label"].notna()]
    assert len(labelled) > 0
    for unit, rec in labelled.iterrows():
        caption = re.search(rf"<figcaption title='unit {unit}'>(.*?)</figcaption>", page).group(1)
        assert f">{rec['label']}<" in caption and f">AUROC {rec['label_score']:.3f}<" in caption, caption


def test_a_silent_units_caption_says_so_as_the_grid_does():
    """A user's trial: a silent hidden unit's sheet caption read just "no label", where the grid's tile
    says "no label · silent" (no natural image activates it: why it has none)."""
    from viewer.export.build import _caption

    base = {"unit": 4, "status": "ok", "best_activation": 2.0, "label": None, "kind": "fc"}
    assert _caption({**base, "real_top1_activation": -0.5}, "best", True)[-1] == "no label · silent"
    assert _caption({**base, "real_top1_activation": 1.5}, "best", True)[-1] == "no label"


def test_damaged_bytes_in_a_run_are_one_line_naming_the_deep_check(run, tmp_path, capsys):
    """A user's trial: 4 KB overwritten inside an images file (its size unchanged) made `atlas export`
    print a traceback ending "_duckdb.Error: Out of buffer"; now one line with the fix, exit 2, no DIR."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    for victim in (damaged / "images").rglob("*.parquet"):
        data = bytearray(victim.read_bytes())
        data[4:260] = bytes(b ^ 0x5A for b in data[4:260])  # the first page's header
        victim.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main(["export", str(damaged), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("atlas: error: reading the run's files failed"), err
    assert "atlas verify --deep" in err and not out.exists()


def test_a_picture_that_does_not_decode_is_one_line_naming_the_deep_check(run, tmp_path, capsys):
    """A user's trial: bytes flipped inside a stored PNG (the images file's size unchanged, so the quick
    `atlas verify` passes) were exported as a file no viewer opens, exit 0; the export decodes every
    picture anyway, so it names the unit and the deep check, and writes nothing."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    victim = next((damaged / "images" / "layer=fc8").rglob("*.parquet"))
    raw = bytearray(victim.read_bytes())
    at = raw.find(b"IDAT")
    assert at > 0  # the stored PNGs' image data, as the file holds it
    while at > 0:  # every picture of the file damaged, its size unchanged
        raw[at + 8 : at + 24] = bytes(b ^ 0xA5 for b in raw[at + 8 : at + 24])
        at = raw.find(b"IDAT", at + 24)
    victim.write_bytes(bytes(raw))
    out = tmp_path / "out"
    assert main(["export", str(damaged), "--out", str(out), "--layers", "fc8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"atlas: error: run {damaged} is damaged: fc8 unit ")
    assert "picture does not decode as a PNG" in err and "--deep --repair" in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_out_folder_that_is_a_mount_point_is_refused_before_any_work(run, tmp_path, capsys, monkeypatch):
    """A user's trial: --out a mount point (a Docker volume) failed after every picture was written, with
    'Device or resource busy': the export replaces its folder by a rename, which a mount point refuses."""
    import os

    out = tmp_path / "volume"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: os.path.abspath(p) == str(out) or real(p))
    assert main(["export", str(run), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "is a mount point" in captured.err and f"{out / 'atlas'}" in captured.err
    assert not any(out.iterdir())


def test_a_sheet_names_its_run_and_method_and_is_as_wide_as_its_units(run, tmp_path, monkeypatch):
    """Sheets of two methods' runs looked alike, and 4 units left a 10-column sheet mostly blank (a trial)."""
    import viewer.export.build as build

    made = []
    real = build.contact_sheet
    monkeypatch.setattr(build, "contact_sheet", lambda tiles, **kw: made.append(kw) or real(tiles, **kw))
    export_run(ExportRequest(str(run), tmp_path / "atlas", layers=("fc8",), units="0-3"), say=lambda _: None)
    (sheet,) = made
    assert sheet["title"].startswith(f"{run.name} · dgn_am · fc8 · units 0-3 · best pictures"), sheet
    assert sheet["columns"] == 4
    with Image.open(tmp_path / "atlas" / "fc8" / "sheet-01.png") as im:
        assert im.width < 6 * 96  # 4 tiles of 96 px and their gaps, not 10 columns


def test_scale_writes_each_units_picture_larger_pixel_for_pixel(run, tmp_path, capsys):
    """A lecturer's slides: the 48 px PNGs as stored were too small; --scale 4 makes every pixel a 4 x 4
    block (no blur), and the record says so."""
    out = tmp_path / "atlas"
    code, _, err = cli(capsys, "export", str(run), "--out", str(out), "--layers", "fc8", "--units", "0-1",
                       "--scale", "4")  # fmt: skip
    assert code == 0, err
    images = written(run, "images", "fc8")
    mine = images[(images["unit"] == 1) & (images["kind"] == "best")]
    stored = mine.loc[mine["activation"].idxmax(), "png"]
    with Image.open(io.BytesIO(stored)) as small, Image.open(out / "fc8" / "unit-1.png") as big:
        a, b = np.asarray(small.convert("RGB")), np.asarray(big.convert("RGB"))
    assert b.shape == (a.shape[0] * 4, a.shape[1] * 4, 3)
    assert np.array_equal(b[::4, ::4], a) and np.array_equal(b[3::4, 3::4], a)  # blocks, no blur
    assert json.loads((out / MARKER).read_text())["scale"] == 4
