"""`atlas toyworld show`: PNG grids of the toy world's samples (per class, facet) and G's reconstructions."""

from __future__ import annotations

import argparse
from pathlib import Path

from atlas.commands.options import add_toyworld_options, int_in, refuse_empty

HELP = "Look at the toy world: `atlas toyworld show --out DIR` writes PNG grids."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="toyworld_command", metavar="ACTION")
    sub.required = True
    show = sub.add_parser(
        "show", help="Write samples.png (a row per fine label, named) and reconstructions.png (G's redraws)."
    )
    show.epilog = """examples:
  atlas toyworld show                           # toyworld-show/samples.png and reconstructions.png
  atlas toyworld show --preset pairs --out pairs-show  # trains the pairs world first (~10 min idle)"""
    add_toyworld_options(show)
    show.add_argument(
        "--out", metavar="DIR", default="toyworld-show", help="output folder (default toyworld-show)"
    )
    show.add_argument(
        "--per-row", type=int_in(1, 100, "images per row"), default=10, help="images per row (default 10)"
    )
    show.add_argument(
        "--no-train", action="store_true", help="do not train a missing generator; write only the sample grid"
    )


def run(args: argparse.Namespace) -> int:
    from atlas.atomic import check_writable_dir
    from atlas.errors import AtlasError

    if not args.out.strip():  # Path("") is the current directory
        raise AtlasError("--out: empty path; give a folder for samples.png and reconstructions.png")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise AtlasError(f"--out: {out} is a file; give a directory for samples.png and reconstructions.png")
    made = [p for p in [out, *out.parents] if not p.exists()]  # the folders this command makes, deepest first
    check_writable_dir(out, "--out")
    try:
        return _write_sheets(args, out)
    except BaseException:  # a full disk, Ctrl-C: the folders this command made and left empty go again
        for folder in made:
            try:
                folder.rmdir()  # only when empty: a finished samples.png stays, and its folders
            except OSError:
                break
        raise


def _write_sheets(args: argparse.Namespace, out: Path) -> int:
    from atlas.atomic import check_writable_dir
    from atlas.contact_sheet import save_sheet
    from atlas.errors import AtlasError
    from atlas.toyworld import ToyWorld
    from atlas.toyworld.loops import predict
    from atlas.toyworld.settings import resolve
    from atlas.toyworld.show import recon_sheet, sample_sheet

    refuse_empty(args, "config", "cache_dir")
    if args.cache_dir:
        check_writable_dir(args.cache_dir, "--cache-dir")
    preset, cache_dir = resolve(args.preset, args.cache_dir, args.config)
    world = ToyWorld(preset, cache_dir)
    test = world.data("test")
    print(save_sheet(sample_sheet(test.images, test.fine, args.per_row), out / "samples.png"))
    try:
        g = world.module("generator", train_if_missing=not args.no_train)
    except AtlasError as exc:
        if not args.no_train:
            raise
        print(f"(no reconstructions: {exc})")
        return 0
    recon = predict(g, world.codes("test"))
    print(save_sheet(recon_sheet(test.rgb01(), recon, test.fine, args.per_row), out / "reconstructions.png"))
    return 0
