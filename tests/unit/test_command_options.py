"""Command options as users mistype them: one `atlas: error:` line and exit 2 before any work, nothing
written; and the small answers that used to mislead (sql's prompt, layers' blocks, weights messages)."""

from __future__ import annotations

import argparse
import io
import json
import re
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from atlas.cli import main
from atlas.errors import AtlasError

pytestmark = pytest.mark.unit
SPEC = "python:tests.unit.byo_factories"


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_user_error(proc, *fragments):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("atlas: error: "), err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        f"name: t\nout_dir: {tmp_path / 'runs'}\n"
        f"models: {{target: '{SPEC}:good', allow_random_weights: true}}\n"
        "layers: [fc8]\nsampler: {method: pixel, steps: 2, chains_per_unit: 2, start: random}\n"
        "facets: {real_images: null}\ncompute: {device: cpu}\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--limit", "-3"], ["argument --limit: -3 is below 1"]),
        (["--limit", "0"], ["0 is below 1"]),
        (["--sigmas", "nan"], ["--sigmas", "nan is not a finite number > 0"]),
        (["--sigmas", "-3"], ["-3 is not a finite number > 0"]),
    ],
)
def test_code_stats_options_are_checked_first(args, fragments, config, tmp_path, capsys):
    proc = cli(capsys, "code-stats", "--config", config, "--images", str(tmp_path), "--out", "s.pt", *args)
    assert_user_error(proc, *fragments)


def test_a_limit_below_what_the_command_needs_names_the_limit_not_the_folder(config, tmp_path, capsys):
    images = tmp_path / "no-images-read"  # refused before any image is read
    proc = cli(
        capsys, "train-dae", "--config", config, "--images", str(images), "--out", "d.pt", "--limit", "3"
    )
    assert_user_error(proc, "--limit 3 keeps too few images; a DAE needs at least 10")


def test_too_few_images_for_a_dae_are_counted_before_the_codes(config, tmp_path, capsys, monkeypatch):
    """Six images for a DAE that needs ten: said before any image is decoded and coded."""
    from PIL import Image

    import atlas.real_codes

    images = tmp_path / "six"
    images.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8)).save(images / f"{i}.png")
    monkeypatch.setattr(
        atlas.real_codes, "codes_of_images", lambda *a, **k: pytest.fail("codes were computed")
    )
    out = str(tmp_path / "d.pt")
    proc = cli(
        capsys,
        "train-dae",
        "--config",
        config,
        "--images",
        str(images),
        "--out",
        out,
        "--set",
        "models.code_layer=relu6",
    )
    assert_user_error(proc, f"--images: only 6 image(s) in {str(images)!r}; a DAE needs at least 10")


@pytest.mark.parametrize("command", ["code-stats", "train-dae"])
def test_an_output_path_that_cannot_take_a_file_is_refused_before_the_work(command, config, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    images = tmp_path / "no-images-needed"  # the output is checked before the images are read
    proc = cli(capsys, command, "--config", config, "--images", str(images), "--out", str(folder))
    assert_user_error(proc, f"--out: {folder} is a directory, not a file")
    (tmp_path / "afile").write_text("x")
    proc = cli(
        capsys,
        command,
        "--config",
        config,
        "--images",
        str(images),
        "--out",
        str(tmp_path / "afile" / "s.pt"),
    )
    assert_user_error(proc, "afile is a file, not a directory; choose another path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "c.yaml"]  # nothing half-written
    assert not any(folder.iterdir())


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["quality", "--seeds", "-1"], ["--seeds", "-1 is below 1"]),
        (["quality", "--steps", "0"], ["--steps", "0 is below 1"]),
        (["truth", "--max-units", "0"], ["--max-units", "0 is below 1"]),
        (["viewer", "--images", "0"], ["--images", "0 is not an integer from 1 to 5000000 (images)"]),
        (
            ["throughput", "--store", "ftp://x"],
            ["--store: measures the store through Ray workers; add --ray"],
        ),
        (["objectives", "--json", "{tmp}"], ["--json: {tmp} is a directory, not a file"]),
    ],
)
def test_bench_options_are_checked_before_any_bench_runs(args, fragments, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_user_error(cli(capsys, "bench", *args), *(f.replace("{tmp}", str(tmp_path)) for f in fragments))


def _typed(text: str):
    """read_line(continued) over ``text``'s lines; None at the end (as the console's readers)."""
    lines = iter(io.StringIO(text).readlines())
    return lambda continued: next(lines, None)


def test_sql_prompt_runs_a_last_statement_without_semicolon_and_names_unknown_commands():
    from atlas.commands.sql import DOT_HELP, SCHEMA_SQL, TABLES_SQL, _statements

    complaints, said = [], []

    def complain(message, where=None):
        complaints.append((message, where))

    typed = _typed("SELECT 1;\n.bogus\n.tables;\n\nSELECT\n  2\n")
    got = list(_statements(typed, complain, said.append))
    assert got == [(1, "SELECT 1;"), (3, TABLES_SQL), (5, "SELECT\n2")]  # with their first lines
    assert complaints == [("unknown command .bogus; valid: .tables, .schema [TABLE], .help, .quit", 2)]
    typed = _typed("SELECT 1;\n.schema units\n.schema\n.help\n.quit\nSELECT 2;\n")
    got = list(_statements(typed, complain, said.append))
    units = 'SELECT column_name AS "column", column_type AS type FROM (DESCRIBE "units");'
    assert got == [(1, "SELECT 1;"), (2, units), (3, SCHEMA_SQL)] and said == [DOT_HELP]


def test_ctrl_c_at_the_prompt_drops_the_statement_being_typed_and_goes_on():
    from atlas.commands.sql import _statements

    feed = iter(["SELECT 'lost'", KeyboardInterrupt, "SELECT 'kept';", None])

    def read_line(continued):
        item = next(feed)
        if item is KeyboardInterrupt:
            raise KeyboardInterrupt
        return item

    said = []
    assert list(_statements(read_line, lambda *a: None, said.append)) == [(2, "SELECT 'kept';")]
    assert said == [""]


def test_layers_counts_a_conv_and_its_batchnorm_once(capsys):
    """The summary's unit count took each BatchNorm's channels again beside its conv's."""
    out = cli(capsys, "layers", "toyworld:target", "--preset", "micro").stdout
    rows = [line.split() for line in out.splitlines() if line.split()[1:2] in (["Conv2d"], ["Linear"])]
    expected = sum(int(r[3]) for r in rows)
    assert f"{expected:,} units in layers with weights (normalization layers not counted)" in out, out


def test_layers_names_the_blocks_it_leaves_out(capsys):
    proc = cli(capsys, "layers", "toyworld:target", "--preset", "micro")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("4 blocks (conv1, conv2, conv3, conv4)") and "--all lists them" in last, last
    every = cli(capsys, "layers", "toyworld:target", "--preset", "micro", "--all").stdout
    assert "blocks (" not in every


def test_random_bytes_as_weights_are_called_corrupt_not_pickled_objects(tmp_path, capsys):
    junk = tmp_path / "w.pt"
    junk.write_bytes(bytes(range(256)) * 4)
    proc = cli(capsys, "layers", f"{SPEC}:good", "--weights", str(junk))
    assert_user_error(proc, "is corrupt or not a torch state-dict file")

    obj = tmp_path / "obj.pt"
    torch.save({"m": argparse.Namespace(a=1)}, obj)  # a real pickle of an object: refused as such
    assert_user_error(
        cli(capsys, "layers", f"{SPEC}:good", "--weights", str(obj)), "holds pickled Python objects"
    )


def test_verify_keeps_the_whole_reason_short(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from atlas.store.location import open_location
    from atlas.store.verify import _check_file

    good = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1]}), good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"x" * 50)
    loc = open_location(str(tmp_path))
    assert _check_file(loc, "t.parquet", 1) is None
    why = _check_file(loc, "bad.parquet", 1)
    assert why is not None and why.startswith("bad.parquet is unreadable (") and why.endswith(")"), why
    assert "this is)" not in why and len(why) < 200


def test_a_path_that_is_a_file_is_not_a_missing_run(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("x: 1\n")
    assert_user_error(cli(capsys, "sql", str(f), "SELECT 1"), "is a file, not a run")
    assert_user_error(cli(capsys, "view", str(f)), "is a file, not a run")
    assert_user_error(cli(capsys, "sql", str(tmp_path / "none"), "SELECT 1"), "does not exist")


@pytest.mark.parametrize("signal_as, code", [("Terminated", 143), ("KeyboardInterrupt", 130)])
def test_a_viewer_stopped_by_sigterm_or_ctrl_c_exits_as_every_command(
    tmp_path, capsys, monkeypatch, signal_as, code
):
    """A user's trial: `atlas view` exited 0 after SIGTERM and Ctrl-C, where the README promises 143 and
    130; the server goes down with it."""
    import atlas.errors
    from atlas.bench.synthetic_run import make_synthetic_run

    make_synthetic_run(tmp_path / "run", layers={"fc8": 2}, chains=1, steps=10)
    servers = []

    class Server:
        def __init__(self, command, **_kwargs):
            self.command, self.stopped = command, False
            servers.append(self)

        def wait(self, timeout=None):
            if not self.stopped:
                raise getattr(atlas.errors, signal_as, KeyboardInterrupt)()
            return -15

        def poll(self):
            return -15 if self.stopped else None

        def terminate(self):
            self.stopped = True

    monkeypatch.setattr("subprocess.Popen", Server)
    with socket.socket() as free:  # a port check_listen accepts
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    said = cli(capsys, "view", str(tmp_path / "run"), "--port", port)
    assert said.returncode == code and said.stderr.strip() == "atlas: viewer stopped", said.stderr
    assert [s.stopped for s in servers] == [True]
    from atlas.commands.run import _ViewerWhenReady  # `atlas run --view`, once the run is done: the same
    from atlas.errors import Interrupted
    from atlas.store.location import open_location

    servers.clear()
    viewer = _ViewerWhenReady(open_location(str(tmp_path / "run")), int(port))
    with pytest.raises(Interrupted) as caught:
        viewer.serve_until_stopped()
    viewer.stop()
    assert (str(caught.value), caught.value.exit_code) == ("viewer stopped", code)
    assert [s.stopped for s in servers] == [True]


def test_yaml_anchors_and_merge_keys_still_load_and_a_set_value_cannot_repeat_a_key(tmp_path, capsys):
    from atlas.config import load_config
    from atlas.errors import ConfigError

    path = tmp_path / "m.yaml"
    path.write_text(
        "x-defaults: &d {steps: 3, chains_per_unit: 2}\n"
        "name: t\nmodels: {target: toyworld:target}\nlayers: [fc8]\n"
        "sampler: {<<: *d, method: pixel, chains_per_unit: 4}\n"
    )
    with pytest.raises(ConfigError, match="unknown config key 'x-defaults'"):  # the merge parsed
        load_config(path)
    path.write_text(
        "name: t\nmodels: {target: toyworld:target}\nlayers: [&f {name: fc8}]\n"
        "sampler: {method: pixel, steps: 3}\nfacets: {<<: {top_k_real: 5, seed_pool: 20}, seed_pool: 30}\n"
    )
    cfg = load_config(path)
    assert cfg.facets.top_k_real == 5 and cfg.facets.seed_pool == 30  # an explicit key overrides a merged one
    proc = cli(capsys, "config", str(path), "--set", "sampler={steps: 3, steps: 5}")
    assert_user_error(proc, "--set 'sampler={steps: 3, steps: 5}': key 'steps' appears twice")


@pytest.mark.parametrize("command", ["code-stats", "train-dae"])
def test_an_output_over_the_commands_own_inputs_is_refused(command, config, tmp_path, capsys):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "0.png").write_bytes(b"an image")
    before = Path(config).read_bytes()
    for out, option in ((config, "--config"), (str(images / "0.png"), "--images")):
        proc = cli(capsys, command, "--config", config, "--images", str(images), "--out", out)
        assert_user_error(proc, f"--out: {out} would overwrite the command's own input ({option} ")
    assert Path(config).read_bytes() == before and (images / "0.png").read_bytes() == b"an image"


@pytest.mark.parametrize(
    "command, args, says",
    [
        ("train-dae", ["--noise", "1e300"], "1e300 is not a finite number of code standard deviations > 0"),
        ("train-dae", ["--hidden", "100000000"], "is not an integer from 1 to 65536 (hidden units)"),
        ("train-dae", ["--seed", "99999999999999999999999"], "is not an integer from 0 to"),
        ("train-dae", ["--seed", "-1"], "-1 is not an integer from 0 to"),
        ("code-stats", ["--limit", "99999999999999999999999"], "is too large; give an integer from 1 to"),
    ],
)
def test_numbers_beyond_what_the_work_can_take_are_refused_first(
    command, args, says, config, tmp_path, capsys
):
    proc = cli(capsys, command, "--config", config, "--images", str(tmp_path), "--out", "o.pt", *args)
    assert_user_error(proc, says)


@pytest.mark.parametrize("command", ["code-stats", "train-dae"])
def test_codes_of_a_layer_the_generator_cannot_take_are_refused_before_any_image_is_read(
    command, tmp_path, capsys
):
    images = tmp_path / "imgs"
    images.mkdir()  # empty: the check comes first, else the error would be about the folder
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: t\ntoyworld: {preset: micro}\nlayers: [fc8]\n"
        "models: {target: toyworld:target, generator: toyworld:generator, code_layer: fc8}\n"
    )
    out = tmp_path / "o.pt"
    proc = cli(capsys, command, "--config", str(config), "--images", str(images), "--out", str(out))
    assert_user_error(proc, "models.code_layer: layer 'fc8' gives codes of 10 values", "has 64 (64,)")
    assert not out.exists()


def test_code_stats_needs_two_codes_and_never_writes_what_a_run_refuses(
    tmp_path, monkeypatch, capsys, config
):
    import atlas.real_codes
    from atlas.models.codes import CodeStats

    out = tmp_path / "s.pt"
    monkeypatch.setattr(atlas.real_codes, "real_codes", lambda *a, **k: (torch.rand(1, 8), "fc7"))
    proc = cli(capsys, "code-stats", "--config", config, "--images", str(tmp_path), "--out", str(out))
    assert_user_error(proc, "1 image(s)", "needs at least 2")
    bad = torch.rand(5, 8)
    bad[2, 3] = float("inf")
    monkeypatch.setattr(atlas.real_codes, "real_codes", lambda *a, **k: (bad, "fc7"))
    proc = cli(capsys, "code-stats", "--config", config, "--images", str(tmp_path), "--out", str(out))
    assert_user_error(proc, "give statistics that holds non-finite values")
    assert not out.exists()
    stats = CodeStats.from_codes(torch.rand(5, 8), "t")
    stats.mean = [0.0] * 8  # what a hand-made file may hold
    assert stats.problem() == "has a 'mean' that is not a tensor (list)"


@pytest.mark.parametrize(
    "path, says", [("", "--out: empty path"), ("  ", "--out: empty path"), ("new/", "new/ is a directory")]
)
def test_output_paths_that_name_no_file(path, says):
    from atlas.atomic import check_output_file
    from atlas.errors import AtlasError

    with pytest.raises(AtlasError, match=re.escape(says)):
        check_output_file(path, "--out")


def test_atomic_write_leaves_nothing_behind_when_the_write_fails(tmp_path):
    from atlas.atomic import atomic_write

    target = tmp_path / "f.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"old"), sync=True)

    def fails(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with pytest.raises(OSError, match="disk full"):  # nor the new folders it made for the file
        atomic_write(tmp_path / "new" / "deeper" / "f.bin", fails)
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_bench_actions_mistake_points_at_its_own_help(capsys):
    proc = cli(capsys, "bench", "quality", "--seeds", "x")
    assert_user_error(proc, "(see 'atlas bench quality --help')")
    proc = cli(capsys, "bench", "objectives", "--bogus")
    assert_user_error(proc, "unrecognized arguments: --bogus")


def test_bench_options_that_would_be_ignored_or_fail_late_are_refused_first(config, tmp_path, capsys):
    """No benchmark work starts (these would run for minutes) before its options are all usable."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    no_g = config  # pixel methods only: a method that needs G must fail before the pixel one runs
    for args, says in (
        (["quality", "--config", config, "--seeds", "5"], "--seeds does not apply with --config"),
        (["quality", "--config", config, "--preset", "micro"], "--preset does not apply with --config"),
        (["quality", "--max-units", "3"], "--max-units does not apply in the method comparison"),
        (["quality", "--compare"], "--compare does not apply without --config"),
        (
            ["quality", "--config", config, "--compare", "--preset", "micro"],
            "--preset does not apply with --config",
        ),
        (["throughput", "--config", config, "--preset", "micro"], "--preset does not apply with --config"),
        (["throughput", "--repeat", "3"], "--repeat does not apply without --ray"),
        (["throughput", "--ray", "--batches", "1"], "--batches does not apply with --ray (the demo"),
        (["throughput", "--ray", "--methods", "dgn_am"], "--methods does not apply with --ray"),
        (["throughput", "--methods", ""], "--methods: empty list"),
        (["viewer", "--run", str(tmp_path), "--images", "10"], "--images does not apply with --run"),
        (["quality", "--methods", ""], "--methods: empty list"),
        (["quality", "--out", str(afile)], f"--out: {afile} is a file, not a directory"),
        (["quality", "--json", ""], "--json: empty path"),
        (["viewer", "--keep", str(afile)], f"--keep: {afile} is a file, not a directory"),
        (["viewer", "--keep", str(tmp_path)], f"--keep: {tmp_path} holds other files; give a new or empty"),
        (["throughput", "--batches", "1,,2"], "--batches: '1,,2' is not a list of integers"),
        (["throughput", "--batches", ""], "--batches: '' is not a list of integers"),  # not the defaults
        (["throughput", "--methods", "dgn_am,,pixel"], "--methods: 'dgn_am,,pixel' has an empty item"),
        (
            ["throughput", "--batches", "8,99999999"],
            "has a size out of range; give batch sizes from 1 to 65536 (compute.batch_size)",
        ),
        (["throughput", "--ray", "--store", "ftp://x/y"], "--store: 'ftp://x/y' is no object store"),
        (["throughput", "--ray", "--store", "s3://"], "--store: 's3://' names no bucket"),
        (["viewer", "--run", "s3://"], "--run: 's3://' names no bucket"),  # not "out_dir: ..."
        (["objectives", "--config", str(no_g), "--methods", "pixel,dgn_am"], "'dgn_am' needs a generator"),
        (["truth", "--config", str(no_g), "--methods", "pixel,ppgn_h"], "'ppgn_h' needs a generator"),
        (["objectives", "--methods", "ga"], "--methods: 'ga' is not measured here (its diversity term is a"),
        (["objectives", "--methods", "gaa"], "--methods: unknown method 'gaa'; valid: dgn_am"),
        (
            ["objectives", "--methods", "dgn-am"],
            "--methods: unknown method 'dgn-am' (did you mean 'dgn_am'?)",
        ),
        (["quality", "--methods", "pixl"], "--methods: unknown method 'pixl' (did you mean 'pixel'?); valid"),
    ):
        assert_user_error(cli(capsys, "bench", *args), says)


def test_a_tilde_the_shell_left_alone_is_expanded_for_a_bench_report(tmp_path, monkeypatch):
    import argparse

    from atlas.commands.bench import _check_paths

    monkeypatch.setenv("HOME", str(tmp_path))
    args = argparse.Namespace(json="~/b.json", out="~/grids", keep=None, store=None)
    _check_paths(args)
    assert (args.json, args.out) == (str(tmp_path / "b.json"), str(tmp_path / "grids"))
    (tmp_path / "adir").mkdir()  # checked where it will be written, not at a literal ./~
    with pytest.raises(AtlasError, match="is a directory, not a file"):
        _check_paths(argparse.Namespace(json="~/adir", out=None, keep=None, store=None))


def test_train_dae_that_diverges_writes_nothing(config, tmp_path, monkeypatch, capsys):
    from torch import nn

    import atlas.models.dae
    import atlas.real_codes

    out = tmp_path / "dae.pt"
    out.write_bytes(b"the previous DAE")
    monkeypatch.setattr(atlas.real_codes, "real_codes", lambda *a, **k: (torch.rand(20, 8), "fc7"))
    diverged = nn.Linear(2, 2)
    nn.init.constant_(diverged.weight, float("nan"))
    report = {"heldout_error": float("nan"), "identity_error": 1.0, "codes": 20, "dim": 8}
    monkeypatch.setattr(atlas.models.dae, "train_dae", lambda *a, **k: (diverged, report))
    proc = cli(capsys, "train-dae", "--config", config, "--images", str(tmp_path), "--out", str(out))
    assert_user_error(proc, "the DAE's training diverged", "left as it was")
    assert out.read_bytes() == b"the previous DAE"


def test_a_new_output_beside_the_images_is_fine_and_any_interface_can_serve():
    from atlas.atomic import check_output_file
    from atlas.commands.options import check_listen

    images = Path(__file__).parent  # a folder the command would read images from
    assert check_output_file(images / "stats-new.pt", "--out", {"--images": images}, reads=(".png",))
    check_listen("0.0.0.0", 0)  # port 0: any free one
    check_listen("127.0.0.1", 0)


def test_run_hints_quote_paths_with_spaces():
    from atlas.pipeline.driver import format_summary

    summary = {"units": 1, "chains": 2, "images": 4, "rows": {"units": 1}, "wall_seconds": 1.0,
               "units_per_minute": 60.0, "shards_run": 1, "shards_skipped": 0, "shards": 1, "diverged": 0,
               "errors": 0, "run_dir": "/tmp/a b/run"}  # fmt: skip
    text = format_summary(summary)
    assert "atlas sql '/tmp/a b/run' \"SELECT" in text and "atlas view '/tmp/a b/run'" in text


def test_run_summary_warns_when_workers_computed_in_different_precisions():
    from atlas.pipeline.driver import format_summary

    summary = {"units": 1, "chains": 2, "images": 4, "rows": {"units": 1}, "wall_seconds": 1.0,
               "units_per_minute": 60.0, "shards_run": 2, "shards_skipped": 0, "shards": 2, "diverged": 0,
               "errors": 0, "run_dir": "/tmp/run", "precision": ["bfloat16"]}  # fmt: skip
    assert "precision: bfloat16" in format_summary(summary)
    assert "warning" not in format_summary(summary)
    text = format_summary(summary | {"precision": ["bfloat16", "float32"]})
    assert "precision: bfloat16, float32" in text
    assert "warning: the run's shards were computed in different precisions" in text


def test_bench_viewer_keep_reuses_only_its_own_run_of_the_size_asked(tmp_path, capsys):
    from atlas.bench.synthetic_run import make_synthetic_run

    real = tmp_path / "real"
    make_synthetic_run(real, layers={"fc8": 4}, chains=1, steps=4, images_per_chain=2, real_k=0,
                       config_extra={"synthetic": False})  # fmt: skip
    says = f"--keep: {real} holds a run this bench did not build; measure it with --run {real}"
    assert_user_error(cli(capsys, "bench", "viewer", "--keep", str(real)), says)
    mine = tmp_path / "mine"
    make_synthetic_run(mine, layers={"conv5": 100}, chains=1, steps=4, images_per_chain=2, real_k=0)
    says = "--images 100,000: the run in --keep"
    assert_user_error(cli(capsys, "bench", "viewer", "--keep", str(mine), "--images", "100000"), says)
    half = tmp_path / "half"  # a build that was stopped: measured, it passed on a part of the run
    make_synthetic_run(half, layers={"fc8": 16, "conv5": 16}, chains=1, steps=4, images_per_chain=2, real_k=0,
                       max_shards=1)  # fmt: skip
    proc = cli(
        capsys, "bench", "viewer", "--keep", str(half), "--images", "3000", "--units", "2", "--repeat", "1"
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"the run in --keep {half} was left unfinished (its build was stopped); building it again"
        in proc.stdout
    )
    from atlas.store.manifest import read_manifest

    assert read_manifest(half)["status"] == "complete"


def test_the_ray_throughput_bench_starts_its_own_local_instance(monkeypatch):
    """`bench throughput --ray` called a bare ray.init(), which joins the cluster a stale
    /tmp/ray/ray_current_cluster names (and failed there with a traceback): it connects as `atlas run`."""
    import argparse

    import ray

    from atlas.bench import ray_throughput
    from atlas.pipeline import cluster

    asked = []

    def connect(address):
        asked.append(address)
        raise KeyboardInterrupt  # stop before any run

    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("a bare ray.init"))
    with pytest.raises(KeyboardInterrupt):
        ray_throughput.run(argparse.Namespace(store=None, repeat=1))
    assert asked == [None]


def test_bench_json_is_strict_json_with_null_for_what_is_no_number(tmp_path):
    """NaN (a speedup without batch 1, an activation ratio without real images) is null: strict parsers
    (JavaScript's JSON.parse) refuse Python's bare NaN."""
    import json

    from atlas.bench import write_json

    write_json(str(tmp_path / "r.json"), {"speedup": float("nan"), "rows": [{"x": float("inf"), "y": 1.5}]})
    text = (tmp_path / "r.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"speedup": None, "rows": [{"x": None, "y": 1.5}]}


def test_a_speed_table_says_when_the_machine_was_busy():
    """A 2-core machine's throughput moved 24x with another process at 100 %: the table says so."""
    from atlas.bench.throughput import format_table
    from atlas.toyworld.machine import busy_note

    assert busy_note(0.3, 2.4, cpus=2, own_threads=2) is None  # idle before; during: the bench itself
    said = busy_note(2.8, 4.1, cpus=2, own_threads=2)
    assert said and "load average 2.8 before it started and 4.1 at its end" in said and "on 2 CPUs" in said
    assert "at its end" not in busy_note(1.5, None, cpus=2, own_threads=2)
    row = {"by_batch": {16: 29.6}, "best_batch": 16, "speedup": float("nan"), "gflop_per_chain_step": 0.09,
           "gflops": {16: 2.77}}  # fmt: skip
    machine = {"cpus": 2, "cpu_model": "x", "cpu_flags": {}, "torch": "2", "torch_threads": 2}
    report = {"device": "cpu", "threads": 2, "methods": {"dgn_am": row}, "load_before": 2.8,
              "load_after": 4.1, "machine": machine}  # fmt: skip
    assert format_table(report).splitlines()[-1].startswith("atlas: warning: the machine was busy")
    quiet = {**report, "load_before": 0.2, "load_after": 2.1}
    assert "busy" not in format_table(quiet)


def test_a_step_time_is_the_fastest_repeats_and_unsteady_rates_are_marked(monkeypatch):
    """A user's trial on busy cores: the median of per-pair differences read one noisy pair's small
    difference as a fast step (B=16 at 51, then 2,096 chain-steps/s; speedups of 400-590x)."""
    from atlas.bench import throughput

    times = iter([1.8, 2.0, 1.9, 2.0, 1.0, 3.0])  # (t(2), t(12)) three times: two short runs slowed
    monkeypatch.setattr(throughput, "_timed", lambda *_a: next(times))
    per_step, spread = throughput._marginal_step_seconds(None, "fc8", [0], (2, 12), None, 3)
    assert per_step == pytest.approx((2.0 - 1.0) / 10)  # fastest long - fastest short, not the 0.02 median
    assert spread == pytest.approx(0.5)  # the slowest long took 1.5x the fastest
    row = {"by_batch": {1: 10.0, 16: 400.0}, "best_batch": 16, "speedup": 40.0, "gflop_per_chain_step": 0.09,
           "gflops": {1: 0.9, 16: 36.0}, "spread": {1: 0.05, 16: 0.8}}  # fmt: skip
    report = {"device": "cpu", "threads": 2, "methods": {"dgn_am": row}}
    table = format_table_of(report)
    line = next(ln for ln in table.splitlines() if ln.startswith("dgn_am"))
    assert "10.0 " in line and "400.0*" in line and "40.0*" in line  # B=16 unsteady, and the speedup on it
    assert "* unsteady: the slowest of its repeats took over 25% longer" in table
    steady = {**report, "methods": {"dgn_am": {**row, "spread": {1: 0.05, 16: 0.1}}}}
    assert "40.0x" in format_table_of(steady) and "unsteady" not in format_table_of(steady)


def format_table_of(report: dict) -> str:
    from atlas.bench.throughput import format_table

    return format_table(report)


def test_batches_named_twice_are_refused(capsys):
    from atlas.cli import main

    assert main(["bench", "throughput", "--batches", "16,128,16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "atlas: error: --batches: '16,128,16' names 16 twice; name each size once", err


def test_a_throughput_bench_in_fp16_off_cuda_is_refused_not_measured_in_float32(capsys, monkeypatch):
    """A trial: `bench throughput --set compute.autocast=fp16` on a CPU printed float32 rates, exit 0, where
    `atlas config --check` refuses fp16 without CUDA."""
    from atlas.cli import main

    argv = ["bench", "throughput", "--preset", "micro", "--batches", "1", "--methods", "dgn_am"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # device auto: the CPU, also on a GPU box
    assert main([*argv, "--set", "compute.autocast=fp16"]) == 2
    err = capsys.readouterr().err.strip()
    said = "compute.autocast: fp16 needs a CUDA device and the benchmark runs on cpu; use bf16 or auto"
    assert err == f"atlas: error: {said}", err


def test_the_viewer_bench_keeps_its_columns_for_long_layer_names_and_counts_the_units_timed(tmp_path, capsys):
    import argparse

    from atlas.bench.synthetic_run import make_synthetic_run
    from atlas.bench.viewer_latency import _report, measure

    make_synthetic_run(tmp_path / "run", layers={"fc8": 10, "layer3.1.conv2": 12}, chains=2, steps=20)
    res = measure(tmp_path / "run", units_per_layer=3, repeat=1)
    assert {layer: (v["units"], v["timed"]) for layer, v in res["layers"].items()} == {
        "fc8": (10, 3),
        "layer3.1.conv2": (12, 3),
    }
    slow = json.loads(json.dumps(res))
    worst = max(v["unit_page"]["median_ms"] for v in res["layers"].values())
    assert _report(res, {}, argparse.Namespace(json=None)) == (0 if worst <= 200 else 1)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("layer ", "fc8 ", "layer3"))]
    assert len(lines) > 2 and len({ln.index(" unit page") for ln in lines if " unit page" in ln}) == 1
    assert len({len(ln) for ln in lines}) == 1, lines  # every row as wide as the header: columns line up
    # a page over the target fails the command, as a failed bootstrap gate does (a pipeline read exit 0)
    slow["layers"]["fc8"]["unit_page"]["median_ms"] = 1e6
    assert _report(slow, {}, argparse.Namespace(json=str(tmp_path / "v.json"))) == 1
    assert json.loads((tmp_path / "v.json").read_text())["passed"] is False
    assert "FAIL" in capsys.readouterr().out


def test_an_interrupted_ray_throughput_bench_says_nothing_resumes(monkeypatch):
    """Its runs' Ctrl-C said "the same `atlas run` resumes from there": the user ran no `atlas run`, and the
    bench's runs are removed."""
    import argparse

    from atlas.bench import ray_throughput
    from atlas.errors import Interrupted
    from atlas.pipeline import cluster

    monkeypatch.setattr(cluster, "connect", lambda _address: False)
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [{"Resources": {"CPU": 2.0}}])

    def stopped(*_args):
        raise Interrupted("interrupted: 4 of 9 shards complete; the same `atlas run` resumes from there", 143)

    monkeypatch.setattr(ray_throughput, "_measure", stopped)
    with pytest.raises(Interrupted) as caught:
        ray_throughput.run(argparse.Namespace(store=None, repeat=1))
    assert str(caught.value) == "interrupted: the bench's runs are removed" and caught.value.exit_code == 143


def test_the_ray_throughput_bench_measures_one_node_and_splits_its_cores(monkeypatch):
    """On a two-node cluster each actor was asked for the driver's core count (no node had it) and the
    runs went to a temporary folder only the driver had (a trial): refused in one line. On one node,
    its own CPUs are split, not the driver machine's."""
    import argparse

    from atlas.bench import ray_throughput
    from atlas.errors import AtlasError
    from atlas.pipeline import cluster

    monkeypatch.setattr(cluster, "connect", lambda _address: False)
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [{"Resources": {"CPU": 1.0}}] * 2)
    with pytest.raises(AtlasError, match=r"measures actors on one machine, and the Ray cluster has 2 nodes"):
        ray_throughput.run(argparse.Namespace(store=None, repeat=1))
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [{"Resources": {"CPU": 8.0}}])
    args = argparse.Namespace(store=None, repeat=1, config=None, preset=None, set=[])
    assert ray_throughput._connect() == (False, 8.0)
    args.node_cpus = 8.0
    assert ray_throughput._config(args, "/tmp/x", 2, "b").ray.cpus_per_worker == 4


def test_the_toyworld_bench_says_when_the_machine_was_busy():
    """Its CPU seconds moved 109 -> 159 s with the load (a user's trial), and it said nothing."""
    from atlas.bench.toyworld_train import format_table

    machine = {"cpus": 2, "cpu_model": "x", "cpu_flags": {}, "torch": "2", "torch_threads": 2,
               "training_threads": 2}  # fmt: skip
    report = {"preset": "micro", "config_hash": "abc", "machine": machine, "gates": {},
              "stages": [{"stage": "total", "wall_s": 196.0, "cpu_s": 159.0}],
              "load_before": 5.0, "load_after": 6.1}  # fmt: skip
    assert format_table(report).splitlines()[-1].startswith("atlas: warning: the machine was busy")
    assert "busy" not in format_table({**report, "load_before": 0.1, "load_after": 2.0})


def test_a_bench_method_with_variants_stands_for_all_of_them():
    """`bench quality --methods ppgn_h` was refused (its rows are ppgn_h/dae and ppgn_h/joint) while `bench
    truth` and `objectives` take `ppgn_h`: the plain name now selects every variant, in the bench's order."""
    from atlas.commands.bench import _variants
    from atlas.errors import AtlasError

    known = ["dgn_am", "ppgn_h/dae", "ppgn_h/joint", "pixel", "pixel+priors"]
    assert _variants(["ppgn_h", "dgn_am"], known) == ["ppgn_h/dae", "ppgn_h/joint", "dgn_am"]
    assert _variants(["ppgn_h/joint", "ppgn_h"], known) == ["ppgn_h/joint", "ppgn_h/dae"]
    assert _variants(None, known) is None
    with pytest.raises(AtlasError, match=r"unknown method 'ppgn'; valid: dgn_am, ppgn_h/dae"):
        _variants(["ppgn"], known)
    # the common-start table follows --methods too (`--methods dgn_am` ran PPGN-h's rows: a trial)
    from atlas.bench.quality import common_start_methods, rows_of
    from atlas.config import SamplerConfig

    rows = common_start_methods(SamplerConfig(dgn_am={"lr": 0.3}))
    assert list(rows_of(rows, ["dgn_am"])) == ["dgn_am", "dgn_am lr 0.1"]
    assert list(rows_of(rows, ["ppgn_h/joint", "pixel"])) == ["ppgn_h/joint"]
    assert rows_of(rows, ["fourier"]) == {} and rows_of(rows, None) == rows


def test_config_check_says_how_gpu_and_cpu_workers_will_run_the_chains(monkeypatch):
    """A trial preparing a GPU cluster run could not tell from `config --check` how the workers resolve
    compute.* (precision, memory format, cuDNN's autotuner) nor that a pass holds one shard's chains."""
    from atlas.commands.config_cmd import compute_line
    from atlas.config import load_config
    from atlas.sampling import compute

    monkeypatch.setattr(compute, "cpu_bf16_is_faster", lambda: False)
    alexnet = Path(__file__).resolve().parents[2] / "configs" / "alexnet-deepsim.yaml"
    assert compute_line(load_config(alexnet)) == (
        "# compute: a GPU worker: bfloat16, contiguous, cuDNN autotuner, 256 chains a pass (one shard's: "
        "units_per_shard x chains_per_unit); a CPU worker (this machine's CPU kind): float32, channels_last, "
        "64 chains a pass"
    )
    wide = load_config(alexnet, ["compute.device=cuda", "ray.units_per_shard=256"])
    gpu = "# compute: a GPU worker: bfloat16, contiguous, cuDNN autotuner"
    assert compute_line(wide) == f"{gpu}, 512 chains a pass, halved on out-of-memory"
    forced = ["compute.device=cuda", "compute.channels_last=true", "compute.cudnn_benchmark=false",
              "compute.batch_size=8"]  # fmt: skip
    assert (
        compute_line(load_config(alexnet, forced))
        == "# compute: a GPU worker: bfloat16, channels_last, 8 chains a pass"
    )
