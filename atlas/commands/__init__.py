"""CLI subcommands; each module: HELP, add_arguments(parser), run(args) -> int (see atlas.cli)."""
