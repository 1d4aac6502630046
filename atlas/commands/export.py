"""`atlas export RUN --out DIR`: the run's pictures as plain files to share (per-unit PNGs, labelled contact
sheets, a static index.html)."""

from __future__ import annotations

import argparse

from atlas.commands.options import int_in

HELP = (
    "Export a run's pictures as plain files: per-unit PNGs, labelled contact sheets and a static index.html."
)
EXAMPLES = """examples:
  atlas export runs/demo --out demo-atlas                  # every layer; open demo-atlas/index.html
  atlas export runs/demo --out fc8 --layers fc8 --picture last --sort activation
  atlas export s3://bucket/atlas/demo --out demo-atlas --units 0-99 --columns 20 --tile 64
"""
PICTURES = ("best", "last")  # viewer.data.PICTURES (not imported here: it pulls in pandas)
SORTS = (
    "unit",
    "activation",
    "weakest",
    "selectivity",
    "rank",
    "facets",
    "label-score",
    "label-margin",
    "flagged",
)
# (viewer.export.SORTS: not imported here, it pulls in pandas)


def _layer_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not text.strip() or any(not name for name in names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty layer name; give names such as fc8,conv3")
    return names


def _unit_spec(text: str) -> str:
    """--units: not empty (an empty shell variable, ``--units "$U"``, had exported every unit)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} names no unit; give units such as '0-99, 250', or leave "
                                         "--units out to export every unit")  # fmt: skip
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory or URI (s3://bucket/atlas/demo)")
    p.add_argument(
        "--out", metavar="DIR", required=True,
        help="a new or empty folder, or one an earlier export wrote (replaced whole when done)",
    )  # fmt: skip
    p.add_argument(
        "--layers", type=_layer_list, default=(), metavar="A,B",
        help="layers to export, in this order (default: every layer, in the config's order)",
    )  # fmt: skip
    p.add_argument(
        "--units",
        type=_unit_spec,
        default=None,
        metavar="SPEC",
        help="units of each layer, e.g. '0-99, 250' (default all)",
    )
    p.add_argument(
        "--picture", choices=PICTURES, default="best",
        help="each unit's most activating best picture (highest objective any step reached) or last (the "
        "final iterate, what the released act_max.py saves)",
    )  # fmt: skip
    p.add_argument(
        "--sort", choices=SORTS, default="unit", help="the units' order (as the viewer's layer grid)"
    )
    p.add_argument(
        "--columns",
        type=int_in(1, 100, "tiles a row"),
        default=10,
        metavar="N",
        help="tiles a row on a sheet",
    )
    p.add_argument(
        "--per-sheet",
        type=int_in(1, 10_000, "units a sheet"),
        default=100,
        metavar="N",
        help="units a contact sheet",
    )
    p.add_argument(
        "--tile", type=int_in(16, 512, "pixels"), default=96, metavar="PX", help="a picture's side on a sheet"
    )
    p.add_argument(
        "--scale", type=int_in(1, 32, "times"), default=1, metavar="N",
        help="each unit's PNG N times its stored size, every pixel a block (for slides; 1: the PNG as "
        "stored)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from atlas.atomic import refuse_uri
    from atlas.errors import AtlasError
    from atlas.tables import counted
    from viewer.export import ExportRequest, export_run

    if not args.out.strip():
        raise AtlasError("--out: empty path; give a folder for the exported atlas, e.g. demo-atlas")
    refuse_uri(args.out, "--out")  # before Path() makes s3://b/x a local s3:/b/x
    req = ExportRequest(
        run=args.run_dir, out=Path(args.out).expanduser(), layers=args.layers, units=args.units or "",
        picture=args.picture, sort=args.sort, columns=args.columns, per_sheet=args.per_sheet,
        tile_px=args.tile, scale=args.scale,
    )  # fmt: skip
    report = export_run(req)
    skipped = f" ({'; '.join(f'{layer}: {why}' for layer, why in report.skipped)})" if report.skipped else ""
    print(
        f"wrote {report.out}: {counted(report.units, 'unit')} of {counted(len(report.layers), 'layer')}"
        f"{skipped}; "
        f"open {report.out / 'index.html'}"
    )
    return 0
