"""`atlas bench quality|throughput`: fidelity and speed of the sampling engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from atlas.bench import provenance, write_json
from atlas.commands.options import positive_int
from atlas.toyworld.presets import PRESETS

CACHE_DIR_HELP = "toy-world cache directory (default: $ATLAS_CACHE or ~/.cache/atlas)"
HELP = (
    "Benchmarks: 'quality' (judge recognizability, activation, selectivity, diversity, facets), 'throughput'"
    " (chain-steps/s by batch; --ray: units/min with 1 and 2 actors), 'viewer' (unit-page query latency),"
    " 'toyworld' (training the toy world from scratch: wall and CPU s per stage), 'truth' (methods against"
    " the toy world's ground truth), 'objectives' (pairs, contrasts and the diversity term)."
)


DEFAULT_BATCHES_TEXT = "1,4,16,64,128,256"  # bench throughput's batch sizes

SUB_EXAMPLES = {
    "quality": """examples:
  atlas bench quality                                            # every method on the toy world, 3 seeds
  atlas bench quality --steps 50 --seeds 1 --out grids/          # quicker, with image grids
  atlas bench quality --config configs/demo.yaml --max-units 10 --json q.json   # the demo atlas itself""",
    "throughput": """examples:
  atlas bench throughput --batches 16,64 --methods dgn_am        # 10-80 s on 2 idle cores, more if busy
  atlas bench throughput --config configs/alexnet-deepsim.yaml --json gpu.json \\
      --set models.allow_random_weights=true --set models.target.weights=null \\
      --set models.generator.weights=null --set models.encoder.weights=null""",
    "toyworld": """example:
  atlas bench toyworld --preset micro --json train.json          # wall and CPU seconds per stage""",
    "viewer": """examples:
  atlas bench viewer                                             # a synthetic run of 100k images
  atlas bench viewer --run runs/demo --json viewer-latency.json  # an existing run""",
    "truth": """example:
  atlas bench truth --methods dgn_am,ppgn_h,fourier --max-units 8""",
    "objectives": """examples:
  atlas bench objectives                                         # pairs, contrasts, diversity: toy world
  atlas bench objectives --config configs/pairs.yaml --methods dgn_am,accentuation
  atlas bench objectives --config configs/pairs-ensemble.yaml --methods dgn_am --seeds 15""",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench", metavar="BENCH")
    sub.required = True
    q = sub.add_parser(
        "quality",
        help="Fidelity of each method on the toy world (judge J, real top-9); with --config: the config's "
        "own atlas (colour truth, judge verdicts, facets per layer; atlas.bench.product).",
    )
    _add_model_options(q, "models, sampler settings", "e.g. --set sampler.dgn_am.lr=0.2 (with --config)")
    q.add_argument(
        "--seeds",
        type=positive_int,
        help="seeds to average over in the method comparison (default 3); with --config the run's seed",
    )
    q.add_argument(
        "--out",
        help="directory for image grids (per method and seed; with --config per layer; default: no grids)",
    )
    q.add_argument(
        "--max-units",
        type=positive_int,
        metavar="N",
        help="with --config: a deterministic subset of each layer's units, N evenly spaced (default: all)",
    )
    q.add_argument(
        "--compare",
        action="store_true",
        help="with --config: the method comparison on the config's models and sampler settings instead of "
        "the config's atlas (on the bench's own units: every output unit and fc7's first 8; "
        "sampler.chains_per_unit at least 8)",
    )
    q.add_argument(
        "--methods",
        help="comma-separated subset of the data-start table: dgn_am,ppgn_h/dae,ppgn_h/joint,pixel,"
        "pixel+priors,fourier,maco,accentuation,ga,cmaes (ga/cmaes: generations for the same forward-pass "
        "budget; the common-start protocol runs its own four; --no-common-start skips it; default: all)",
    )
    q.add_argument(
        "--no-common-start",
        action="store_true",
        help="skip the common-start protocol (the samplers' own diversity: DGN-AM vs PPGN-h)",
    )
    q.add_argument(
        "--steps",
        type=positive_int,
        help="override sampler.steps (default: the config's; 100 on the toy world)",
    )
    t = sub.add_parser("throughput", help="Chain-steps/s by batch size per method (GFLOP/s; MFU on CUDA).")
    _add_model_options(t, "models, compute", "compute.* also without --config")
    t.add_argument(
        "--ray", action="store_true", help="measure through Ray workers (atlas.bench.ray_throughput)"
    )
    t.add_argument(
        "--store",
        metavar="URI",
        help="with --ray: also run into this store (s3://bucket/prefix, or 'local-s3' for an S3 API server "
        "on 127.0.0.1 from moto) and report its units/min against a local directory (default: none)",
    )
    t.add_argument(
        "--repeat", type=positive_int, help="with --ray: measurements per setting (median; default 1)"
    )
    t.add_argument(
        "--batches", help=f"comma-separated batch sizes (default {DEFAULT_BATCHES_TEXT}; not with --ray)"
    )
    t.add_argument(
        "--methods",
        help="comma-separated subset: dgn_am,ppgn_h/dae,ppgn_h/joint,pixel (not with --ray; default: all)",
    )
    _add_viewer_parser(sub)
    _add_truth_parser(sub)
    w = sub.add_parser("toyworld", help="Train a toy-world preset from scratch: wall and CPU s per stage.")
    from atlas.bench import toyworld_train

    toyworld_train.add_arguments(w)
    for name, parser in sub.choices.items():  # after the last one is added: each bench's examples
        parser.epilog = SUB_EXAMPLES.get(name)


def _add_model_options(p: argparse.ArgumentParser, config_holds: str, set_help: str) -> None:
    """--config, --json, --preset, --cache-dir, --set: which models a benchmark measures, where it reports."""
    p.add_argument("--config", help=f"run config ({config_holds}); default: the default toy world")
    p.add_argument("--json", help="also write the report as JSON to this path (default: not written)")
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="toy-world preset when no --config is given (default: default)",
    )
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=CACHE_DIR_HELP,
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"config override, {set_help} (default: none)",
    )


def _add_viewer_parser(sub: argparse._SubParsersAction) -> None:
    from atlas.bench import viewer_latency

    v = sub.add_parser("viewer", help="Unit-page query latency on a synthetic run (target <= 200 ms).")
    viewer_latency.add_arguments(v)


def _add_truth_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "truth",
        help="Truth columns per method from common starts (mean code + noise): labels, weak/off_path/"
        "off_manifold shares, label shown, planted units, cost.",
    )
    r.add_argument(
        "--config", default=None, help="run config (default: configs/demo.yaml of the atlas checkout)"
    )
    r.add_argument(
        "--methods",
        default="dgn_am,ppgn_h,pixel",
        help="comma-separated sampler methods: dgn_am, ppgn_h, pixel, fourier, maco, accentuation, ga, cmaes",
    )
    r.add_argument(
        "--max-units", type=positive_int, metavar="N", help="N evenly spaced units per layer (default: all)"
    )
    r.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (default: none)"
    )
    r.add_argument("--cache-dir", metavar="DIR", help=CACHE_DIR_HELP)
    r.add_argument("--json", help="also write the report as JSON to this path (default: not written)")
    o = sub.add_parser(
        "objectives",
        help="Objective algebra on the toy world's output units: pairs a + b and contrasts a - b (judged by "
        "J, and read by T itself), pairs from the config's own start, the diversity term's effect on chain "
        "diversity and recognizability (atlas.bench.objectives).",
    )
    o.add_argument(
        "--config", default=None, help="run config (default: configs/demo.yaml of the atlas checkout)"
    )
    o.add_argument("--methods", default="dgn_am,ppgn_h", help="comma-separated gradient methods")
    o.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="pairs, contrasts and own-start pairs over this many seeds from the config's seed, with the "
        "standard error across them (default 1; one seed's 20 pictures move a share by 0.05 each)",
    )
    o.add_argument(
        "--steps",
        type=positive_int,
        help="override sampler.steps (default: the config's; 100 on the toy world)",
    )
    o.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (default: none)"
    )
    o.add_argument("--cache-dir", metavar="DIR", help=CACHE_DIR_HELP)
    o.add_argument("--json", help="also write the report as JSON to this path (default: not written)")


def _compute_overrides(assignments: list[str]):
    """``--set compute.KEY=VALUE`` on the default toy world (other keys need --config)."""
    from atlas.config import config_from_dict
    from atlas.errors import AtlasError

    bad = [a for a in assignments if not a.startswith("compute.")]
    if bad:
        raise AtlasError(
            f"--set {bad[0]!r}: without --config only compute.* keys apply (e.g. compute.autocast=none)"
        )
    base = {
        "models": {"target": "toyworld:target"},
        "layers": [{"name": "fc8"}],
        "sampler": {"method": "pixel"},
    }
    return config_from_dict(base, assignments).compute


def _with_cache_dir(args: argparse.Namespace) -> list[str]:
    """The --set overrides, plus toyworld.cache_dir when --cache-dir is given with --config."""
    return list(args.set) + ([f"toyworld.cache_dir={args.cache_dir}"] if args.cache_dir else [])


def _methods(text: str | None) -> list[str] | None:
    """``--methods a,b`` -> [a, b]; None when not given (every method); an empty list is a mistake."""
    if text is None:
        return None
    from atlas.errors import AtlasError

    methods = [m.strip() for m in text.split(",")]
    if not any(methods):
        raise AtlasError("--methods: empty list; name at least one method, e.g. dgn_am,pixel")
    if not all(methods):  # `a,,b` or a trailing comma: a name left out by mistake?
        raise AtlasError(f"--methods: {text!r} has an empty item; name the methods, e.g. dgn_am,pixel")
    return methods


def run(args: argparse.Namespace) -> int:

    _refuse_unused(args)  # before the work, not after it
    _check_paths(args)
    if args.bench == "toyworld":
        from atlas.bench import toyworld_train

        return toyworld_train.run(args)
    if args.bench == "viewer":
        from atlas.bench import viewer_latency

        return int(viewer_latency.run(args) or 0)
    if args.bench == "quality":
        return _quality(args)
    if args.bench == "truth":
        return _truth(args)
    if args.bench == "objectives":
        return _objectives(args)
    if args.ray:
        from atlas.bench import ray_throughput

        return int(ray_throughput.run(args) or 0)
    return _throughput(args)


def _check_paths(args: argparse.Namespace) -> None:
    """Where a benchmark will write (--json, --out, --keep) and what it will read (--store), checked
    before minutes of work; a `~` the shell left alone (``--json=~/b.json``) is expanded."""
    from atlas.atomic import check_output_file, check_writable_dir, refuse_uri
    from atlas.errors import AtlasError
    from atlas.store.location import open_location
    from atlas.uri_filesystem import is_remote

    for option in ("config", "run"):  # read, not written: an empty one would mean "none" by accident
        given = getattr(args, option, None)
        if given is not None and not given.strip():
            raise AtlasError(f"--{option}: empty path; give a {'file' if option == 'config' else 'run'}")
    inputs = {f"--{o}": getattr(args, o) for o in ("config", "run") if getattr(args, o, None)}
    if getattr(args, "json", None) is not None:  # never over the command's own config or run
        args.json = str(check_output_file(args.json, "--json", inputs, reads=(".json", ".parquet")))
    for option in ("out", "keep"):
        folder = getattr(args, option, None)
        if folder is not None:
            if not folder.strip():
                raise AtlasError(f"--{option}: empty path; give a directory")
            refuse_uri(folder, f"--{option}")  # before Path() makes s3://b/x a local s3:/b/x
            folder = str(Path(folder).expanduser())
            check_writable_dir(folder, f"--{option}")
            setattr(args, option, folder)
    run = getattr(args, "run", None)
    if run and is_remote(run):  # its own option named (a trial read "out_dir: cannot open ...")
        open_location(run, what="--run")
    store = getattr(args, "store", None)
    if store and store != "local-s3":
        if not is_remote(store):
            raise AtlasError(f"--store: {store!r} is no object store; give s3://bucket/prefix or local-s3")
        open_location(store, what="--store")


def _quality(args: argparse.Namespace) -> int:
    from atlas.bench.quality import QualitySetup, default_methods, format_table, run_quality
    from atlas.config import load_config, replace
    from atlas.errors import AtlasError

    if args.config and not args.compare:
        return _product(args)
    names = _methods(args.methods)  # before the models load
    if args.config:
        cfg = load_config(args.config, _with_cache_dir(args))
        setup = QualitySetup.from_config(cfg)
        for note in setup.compare_notes(cfg):
            print(note)
    else:
        if args.set:
            raise AtlasError("--set needs --config (it overrides a config file's keys)")
        setup = QualitySetup.from_toyworld(args.preset or "default", args.cache_dir)
    if args.steps:
        setup.sampler = replace(setup.sampler, steps=args.steps)
        setup.common_start = {n: replace(c, steps=args.steps) for n, c in setup.common_start.items()}
    names = _variants(names, default_methods(setup.sampler))
    report = run_quality(
        setup, seeds=args.seeds or 3, out_dir=args.out, methods=names, common_start=not args.no_common_start
    )
    print(format_table(report))
    _write_report(args, report, setup.compute, args.config)
    return 0


def _write_report(args: argparse.Namespace, report: dict, compute, config: str | None) -> None:
    """``--json``: the report with its provenance (command, config, precision, machine, code)."""
    command = getattr(args, "command_line", None)
    write_json(args.json, {**report, "provenance": provenance(compute, config, command)})


def _refuse_unused(args: argparse.Namespace) -> None:
    """An option the chosen benchmark and mode would silently ignore is refused (one line)."""
    from atlas.errors import AtlasError

    if args.bench == "throughput" and args.store and not args.ray:
        raise AtlasError("--store: measures the store through Ray workers; add --ray (or drop --store)")
    for mode, names in _other_modes_options(args):
        for name in names:
            if getattr(args, name.lstrip("-").replace("-", "_"), None) not in (None, False):
                raise AtlasError(
                    f"{name} does not apply {mode}; drop it (see 'atlas bench {args.bench} --help')"
                )


def _other_modes_options(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """(this mode, the options only another mode reads) for the chosen benchmark."""
    if args.bench == "quality" and args.config and not args.compare:
        return [
            (
                "with --config (the config's own atlas)",
                ("--seeds", "--methods", "--preset", "--no-common-start"),
            )
        ]
    if args.bench == "quality":
        other = ("with --config", ("--preset",)) if args.config else ("without --config", ("--compare",))
        return [("in the method comparison", ("--max-units",)), other]
    if args.bench == "throughput":
        return [
            ("without --ray", () if args.ray else ("--repeat",)),
            (
                "with --ray (the demo atlas end to end on 1 and 2 actors)",
                ("--batches", "--methods") if args.ray else (),
            ),
            ("with --config", ("--preset",) if args.config else ()),
        ]
    if args.bench == "viewer" and args.run:
        return [("with --run (an existing run is measured)", ("--images", "--keep"))]
    return []


def _product(args: argparse.Namespace) -> int:
    """``bench quality --config``: the config's own atlas, built the worker's way, measured per layer."""
    from atlas.bench.product import format_product, run_product
    from atlas.config import load_config, replace

    cfg = load_config(args.config, _with_cache_dir(args))
    if args.steps:
        cfg = replace(cfg, sampler=replace(cfg.sampler, steps=args.steps))
    report = run_product(cfg, max_units=args.max_units, out_dir=args.out)
    print(format_product(report))
    _write_report(args, report, cfg.compute, args.config)
    return 0


def _variants(names: list[str] | None, known: list[str] | tuple[str, ...]) -> list[str] | None:
    """``--methods`` names as a bench's rows go: a method with variants (``ppgn_h``) stands for all of them
    (``ppgn_h/dae``, ``ppgn_h/joint``: ``bench truth`` and ``objectives`` take ``ppgn_h``, and a trial's
    ``bench quality --methods ppgn_h`` was refused); a one-line error names an unknown one."""
    from atlas.errors import AtlasError, did_you_mean

    if names is None:
        return None
    out: list[str] = []
    for n in names:
        rows = [n] if n in known else [k for k in known if k.startswith(f"{n}/")]
        if not rows:
            hint = did_you_mean(n, known)
            raise AtlasError(f"--methods: unknown method {n!r}{hint}; valid: {', '.join(known)}")
        out += [r for r in rows if r not in out]
    return out


def _known_methods(text: str, valid: tuple[str, ...], elsewhere: str = "") -> list[str]:
    """``--methods a,b`` -> [a, b]; a one-line error naming the first unknown one (``elsewhere``: why a
    method atlas has is not measured by this bench)."""
    from atlas.config import CODE_METHODS, PIXEL_METHODS
    from atlas.errors import AtlasError, did_you_mean

    methods = _methods(text) or []
    bad = [m for m in methods if m not in valid]
    if bad and bad[0] in CODE_METHODS + PIXEL_METHODS and elsewhere:
        here = ", ".join(valid)
        raise AtlasError(f"--methods: {bad[0]!r} is not measured here ({elsewhere}); valid: {here}")
    if bad or not methods:
        unknown = (bad or [""])[0]
        hint = did_you_mean(unknown, valid) if unknown else ""
        raise AtlasError(f"--methods: unknown method {unknown!r}{hint}; valid: {', '.join(valid)}")
    return methods


def _objectives(args: argparse.Namespace) -> int:
    """``bench objectives``: pairs, contrasts and the diversity term (atlas.bench.objectives)."""
    from atlas.bench.objectives import format_table, run_objectives
    from atlas.config import load_config

    methods = _known_methods(
        args.methods,
        ("dgn_am", "ppgn_h", "pixel", "fourier", "maco", "accentuation"),
        "its diversity term is a gradient term, and ga and cmaes use no gradients",
    )
    steps = [f"sampler.steps={args.steps}"] if args.steps else []
    cfg = load_config(_demo_unless(args.config), _with_cache_dir(args) + steps)
    report = run_objectives(cfg, methods, seeds=args.seeds)
    print(format_table(report))
    _write_report(args, report, cfg.compute, _demo_unless(args.config))
    return 0


def _truth(args: argparse.Namespace) -> int:
    """``bench truth``: the truth columns of the config's atlas per method (atlas.bench.truth)."""
    from atlas.bench.truth import format_table, run_truth
    from atlas.config import CODE_METHODS, PIXEL_METHODS, load_config

    methods = _known_methods(args.methods, CODE_METHODS + PIXEL_METHODS)
    cfg = load_config(_demo_unless(args.config), _with_cache_dir(args))
    report = run_truth(cfg, methods, args.max_units)
    print(format_table(report))
    _write_report(args, report, cfg.compute, _demo_unless(args.config))
    return 0


def _throughput(args: argparse.Namespace) -> int:
    from atlas.bench.throughput import ThroughputSetup, format_table, methods_for, run_throughput
    from atlas.config import load_config
    from atlas.errors import AtlasError

    text = DEFAULT_BATCHES_TEXT if args.batches is None else args.batches
    try:  # bad input first: loading (or training) the models can take minutes
        batches = [int(b) for b in text.split(",")]
    except ValueError:
        raise AtlasError(f"--batches: {text!r} is not a list of integers, e.g. 1,8,64") from None
    from atlas.config.execution import ComputeConfig

    most = next(m.le for m in ComputeConfig.model_fields["batch_size"].metadata if hasattr(m, "le"))
    twice = sorted({b for b in batches if batches.count(b) > 1})
    if twice:  # the table keeps one rate a batch: the second measure had replaced the first, unsaid
        raise AtlasError(f"--batches: {text!r} names {', '.join(map(str, twice))} twice; name each size once")
    if not batches or min(batches) < 1 or max(batches) > most:
        raise AtlasError(
            f"--batches: {text!r} has a size out of range; give batch sizes from 1 to {most} "
            "(compute.batch_size), e.g. 1,8,64"
        )
    names = _methods(args.methods)
    if args.config:
        setup = ThroughputSetup.from_config(load_config(args.config, _with_cache_dir(args)))
    else:
        compute = _compute_overrides(args.set) if args.set else None
        setup = ThroughputSetup.from_toyworld(args.preset or "default", args.cache_dir)
        if compute is not None:
            setup.compute = compute
    names = _variants(names, methods_for(setup))
    report = run_throughput(setup, batches=batches, methods=names)
    print(format_table(report))
    write_json(args.json, report)
    return 0


def _demo_unless(config: str | None) -> str:
    """The run config a bench measures: ``--config``, else the demo config of this atlas checkout (not of
    the current folder, so the bench runs from anywhere)."""
    if config is not None:
        return config
    from atlas.bench import REPO_CONFIGS
    from atlas.errors import ConfigError

    demo = REPO_CONFIGS / "demo.yaml"
    if not demo.is_file():
        raise ConfigError(
            "no --config given and this atlas install has no configs/demo.yaml; pass --config FILE"
        )
    return str(demo)
