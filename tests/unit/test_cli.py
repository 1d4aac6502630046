"""The `atlas` command as a user meets it: layer listing, and one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def atlas(*args):
    return subprocess.run(
        [sys.executable, "-m", "atlas", *args], capture_output=True, text=True, timeout=180, cwd=REPO
    )


def atlas_in_process(capsys, *args):
    """``main`` in this process (no interpreter start, no torch import per call); the same exit code and
    streams. The real-process path is the subprocess cases here and in test_bad_inputs."""
    from atlas.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("atlas: error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_layers_alexnet_lists_features_and_classifier_random_weights():
    proc = atlas("layers", "torchvision:alexnet")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "RANDOM weights" in out.splitlines()[0]
    assert "features.10" in out and "256x13x13" in out and "classifier.6" in out
    row = next(line for line in out.splitlines() if line.startswith("classifier.6"))
    assert "1000" in row and "output" in row  # the output layer says so


def test_layers_of_a_python_generator_list_it_as_one(capsys):
    """A user's trial: a python: factory of a generator was probed with a picture and told to set --size.
    One that declares code_shape is listed as a generator (a forward of a code); --role names a DAE."""
    cli = functools.partial(atlas_in_process, capsys)
    proc = cli("layers", "python:tests.unit.byo_factories:generator")
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert out.splitlines()[0].startswith("python:tests.unit.byo_factories:generator (generator) - RANDOM")
    assert "code shape: (16,)" in out and "output space: 32x32 RGB" in out and "--size" not in out + err
    assert_user_error(
        cli("layers", "python:tests.unit.byo_factories:generator", "--size", "64"),
        "--size: python:tests.unit.byo_factories:generator is a generator",
    )
    assert_user_error(
        cli("layers", "toyworld:targt"), "unknown toy-world component 'targt' (did you mean 'target'?)"
    )
    proc = cli("layers", "python:tests.unit.byo_factories:good", "--role", "target")
    assert proc.returncode == 0 and "(target)" in proc.stdout.splitlines()[0], proc.stderr
    # a toy-world spec fixes its role: a contradicting --role is refused, not printed as the spec's kind
    assert_user_error(
        cli("layers", "toyworld:target", "--role", "generator"),
        "--role generator: toyworld:target is the toy world's target, a network of pictures (its forward "
        "takes pictures); use --role target or leave --role out",
    )
    assert_user_error(
        cli("layers", "toyworld:dae", "--role", "generator"),
        "--role generator: toyworld:dae is the toy world's dae, a code DAE (its forward takes codes and "
        "returns codes); use --role dae",
    )
    assert_user_error(  # a typo is named as one, not taken for a network of pictures
        cli("layers", "toyworld:generatr", "--role", "generator"), "unknown toy-world component 'generatr'"
    )
    proc = cli("layers", "toyworld:generator", "--role", "generator")
    assert proc.returncode == 0 and "(generator)" in proc.stdout.splitlines()[0], proc.stderr


def test_bad_spec_missing_weights_wrong_key_unknown_config_key(tmp_path, capsys):
    assert_user_error(
        atlas("layers", "torchvison:alexnet"), "unknown model scheme 'torchvison'", "torchvision"
    )
    cli = functools.partial(atlas_in_process, capsys)  # the rest in this process
    assert_user_error(
        cli("layers", "torchvision:alexnet", "--weights", str(tmp_path / "none.pt")), "not found"
    )
    from atlas.models.deepsim import DeePSiMGenerator

    state = DeePSiMGenerator("fc8").state_dict()
    state["G.defc7.weightx"] = state.pop("G.defc7.weight")
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    assert_user_error(
        cli("layers", "deepsim:fc8", "--weights", str(bad)),
        "missing keys 'G.defc7.weight'",
        "unexpected keys 'G.defc7.weightx'",
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models: {target: toyworld:target}\nlayers: [{name: fc8}]\nsampler: {method: pixel, stepz: 3}\n"
    )
    assert_user_error(cli("config", str(cfg)), "unknown config key 'sampler.stepz'", "did you mean 'steps'")
    assert_user_error(cli("run", str(cfg)), "unknown config key 'sampler.stepz'")
    assert_user_error(
        cli("config", str(cfg), "--set", "sampler.steps=-1", "--set", "sampler.stepz=null"),
        "unknown config key",
    )


def test_command_line_mistakes_are_one_line_in_a_real_process():
    """argparse's own errors (unknown command, bad choice, missing argument) as every user error: one line."""
    assert_user_error(atlas("nope"), "invalid choice: 'nope'", "(see 'atlas --help')")
    assert_user_error(
        atlas("bootstrap", "--preset", "nope"), "--preset: invalid choice", "'atlas bootstrap --help'"
    )
    assert_user_error(atlas("sql"), "required: RUN_DIR")


def test_a_mistyped_command_or_choice_names_the_close_one():
    said = atlas("runn", "configs/demo.yaml")
    assert_user_error(said, "invalid choice: 'runn'")
    assert said.stderr.rstrip().endswith("(did you mean 'run'?) (see 'atlas --help')"), said.stderr
    assert_user_error(atlas("sql", "runs/x", "--format", "marcdown"), "(did you mean 'markdown'?)")
    assert "did you mean" not in atlas("qqq").stderr  # nothing close: no guess


def test_benches_find_the_demo_config_from_any_folder(tmp_path, monkeypatch):
    from atlas.commands.bench import _demo_unless

    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert Path(_demo_unless(None)) == REPO / "configs" / "demo.yaml"
    assert _demo_unless("mine.yaml") == "mine.yaml"


def test_an_unknown_option_before_the_command_is_refused(capsys):
    from atlas.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--bogus", "sql", "runs/none", "SELECT 1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("atlas: error: unrecognized arguments: --bogus"), err


def test_an_unknown_option_of_a_sub_command_points_to_that_sub_commands_help(capsys):
    from atlas.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "viewer", "--config", "x.yaml"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--config x.yaml (see 'atlas bench viewer --help')" in err, err


def test_ctrl_c_says_how_to_resume_when_the_work_can_be_resumed(monkeypatch, capsys):
    from atlas.cli import main
    from atlas.commands import sql
    from atlas.errors import Interrupted, Terminated

    def stopped(_args):
        raise Interrupted("interrupted: 3 of 8 shards complete; the same `atlas run` resumes from there")

    monkeypatch.setattr(sql, "run", stopped)
    assert main(["sql", "somewhere", "SELECT 1"]) == 130
    assert capsys.readouterr().err == (
        "atlas: interrupted: 3 of 8 shards complete; the same `atlas run` resumes from there\n"
    )

    def plain(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sql, "run", plain)
    assert main(["sql", "somewhere", "SELECT 1"]) == 130
    assert capsys.readouterr().err == "atlas: interrupted\n"

    def terminated(_args):  # SIGTERM, as atlas.pipeline.cluster.stop_on_sigterm raises it
        raise Interrupted("interrupted: 3 of 8 shards complete; ...", exit_code=Terminated.exit_code)

    monkeypatch.setattr(sql, "run", terminated)
    assert main(["sql", "somewhere", "SELECT 1"]) == 143
    monkeypatch.setattr(sql, "run", lambda _args: (_ for _ in ()).throw(Terminated()))
    assert main(["sql", "somewhere", "SELECT 1"]) == 143  # before any run was held


def test_help_states_defaults_and_examples_and_the_version(capsys):
    from atlas.cli import build_parser, main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("atlas 0.")
    parser, commands = build_parser()
    for name, sub in commands.items():
        text = sub.format_help()
        assert sub.description and sub.description[0].isupper(), name  # a sentence, as in `atlas --help`
        assert "--config CONFIG" not in text and "--json JSON" not in text, name  # one metavar each
    assert re.search(r"--epochs N +passes over the codes \(default 20\)", commands["train-dae"].format_help())
    assert "examples:" in commands["run"].format_help()
    assert re.search(
        r"--seed SEED +seed of the noise, batches and weights \(default 0\)",
        commands["train-dae"].format_help(),
    )
    bench = commands["bench"]._subparsers._group_actions[0].choices["quality"]
    assert bench.description  # a sub-command's own help says what it does
    silent = [  # README: "Every command's --help states each option's default" (a trial found some silent)
        f"{name} {action.option_strings[-1]}"
        for name, sub in _every_parser(parser)
        for action in sub._actions
        if action.option_strings and action.nargs != 0 and not action.required and action.help
        and "default" not in sub._get_formatter()._get_help_string(action).lower()
    ]  # fmt: skip
    assert not silent, silent


def _every_parser(parser, name="atlas"):
    """(name, parser) of ``parser`` and every sub-command under it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _every_parser(sub, f"{name} {sub_name}")


def test_config_says_its_own_warnings_without_check(capsys):
    """Warnings that need no model (lr_end above lr) were said by `atlas config --check` only."""
    proc = atlas_in_process(
        capsys, "config", str(REPO / "configs" / "demo.yaml"), "--set", "sampler.method=dgn_am",
        "--set", "models.dae=null", "--set", "sampler.dgn_am.lr_end=1",
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("name: demo"), proc.stderr
    assert proc.stderr.strip() == (
        "atlas: warning: sampler.dgn_am.lr_end 1 is above lr 0.6: the step grows over the run instead of "
        "decaying (set lr_end <= lr)"
    )
    assert atlas_in_process(capsys, "config", str(REPO / "configs" / "demo.yaml")).stderr == ""


def test_layers_of_an_untrained_toy_world_refuses_instead_of_training(tmp_path, monkeypatch, capsys):
    """A user's trial: `atlas layers toyworld:target --preset pairs` (a preset that ships no weights) quietly
    started a 10-minute training; listing layers now says how to train the world and writes nothing."""
    monkeypatch.setenv("ATLAS_CACHE", str(tmp_path))
    proc = atlas_in_process(capsys, "layers", "toyworld:target", "--preset", "pairs")
    assert_user_error(proc, "toy-world target is not trained yet", "atlas bootstrap --preset pairs")
    assert not list(tmp_path.rglob("*.pt"))


def test_a_reader_that_leaves_early_ends_a_command_quietly():
    """`atlas config CONFIG | true` with buffered output (PYTHONUNBUFFERED unset): the reader gone before
    the output's flush at exit made Python print 'Exception ignored ... BrokenPipeError' and exit 120."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    config = [sys.executable, "-m", "atlas", "config", "configs/micro.yaml"]  # a few kB: held in the buffer
    proc = subprocess.Popen(config, env=env, cwd=REPO, **pipes)
    proc.stdout.close()  # the reader gone before the command writes (`| true`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "BrokenPipeError" not in err and "Exception ignored" not in err, err


def test_layers_of_the_planted_target_of_an_untrained_world_refuses_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATLAS_CACHE", str(tmp_path))
    proc = atlas_in_process(capsys, "layers", "toyworld:planted", "--preset", "pairs")
    assert_user_error(proc, "toy-world target is not trained yet", "atlas bootstrap --preset pairs")
    assert not list(tmp_path.rglob("*.pt"))


def test_an_interrupted_command_with_ray_loaded_skips_the_teardown(monkeypatch, capsys):
    """A user's trial: after `atlas: interrupted`, 3 of 19 Ctrl-Cs while Ray started ended in a segfault of
    the interpreter's teardown (exit 139). With Ray loaded an interrupted command ends at once (os._exit),
    its output flushed; everything else exits as before."""
    import os

    from atlas import cli

    ended = []
    monkeypatch.setattr(
        os, "_exit", lambda code: ended.append(code) or (_ for _ in ()).throw(SystemExit(code))
    )
    monkeypatch.setitem(sys.modules, "ray", sys.modules.get("ray") or object())
    for code, skipped in ((130, True), (143, True), (2, False), (0, False)):
        monkeypatch.setattr(cli, "main", lambda c=code: c)
        ended.clear()
        with pytest.raises(SystemExit) as stopped:
            cli.entry()
        assert stopped.value.code == code and ended == ([code] if skipped else []), code
    monkeypatch.delitem(sys.modules, "ray")
    monkeypatch.setattr(cli, "main", lambda: 130)
    ended.clear()
    with pytest.raises(SystemExit):
        cli.entry()
    assert ended == []  # no Ray: the usual exit


def test_a_full_disk_names_the_output_and_a_folder_made_for_it_goes_again(tmp_path, monkeypatch, capsys):
    """A trial's full disk: `atlas export` and `atlas toyworld show` said only "No space left on device"
    (PIL writes to an open file: no filename), and `toyworld show` left the folder it had made."""
    import errno

    from atlas import contact_sheet
    from atlas.cli import main, os_error_line

    def full(_sheet, path, *_a, **_k):  # as save_sheet: its folder made, then the disk full
        path.parent.mkdir(parents=True, exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(contact_sheet, "save_sheet", full)
    out = tmp_path / "new" / "show"  # two folders made for it: both go again
    assert main(["toyworld", "show", "--no-train", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"atlas: error: cannot write under {out}: No space left on device; free space there or choose "
        "another --out\n"
    )
    assert not (tmp_path / "new").exists()
    named = OSError(errno.EACCES, "Permission denied", "/x/y.png")
    assert os_error_line(named, "out") == "/x/y.png: Permission denied"
    assert (
        os_error_line(OSError(errno.EROFS, "Read-only file system"), "o")
        == "cannot write under o: Read-only file system"
    )
    assert os_error_line(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert os_error_line(OSError(errno.EIO, "Input/output error"), "o") == "Input/output error"  # a read
