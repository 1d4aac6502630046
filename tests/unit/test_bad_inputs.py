"""Bad input as users type it: every case exits 2 with exactly one `atlas: error:` line naming the culprit,
no traceback, nothing written, and Ray never started.

Cases run the CLI in-process (``atlas.cli.main``) with tiny ``python:`` models (tests/unit/byo_factories.py)
and ``models.allow_random_weights: true``. Modes: ``config`` (``atlas config FILE``), ``check``
(``atlas config FILE --check``: models + pre-flight, no Ray), ``run`` (``atlas run FILE``), ``layers``.
Pre-flight cases also run through ``atlas run`` once the driver calls ``atlas.pipeline.preflight``.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from atlas.cli import main

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SPEC = "python:tests.unit.byo_factories"
DELETE = object()


def base_config(tmp: Path) -> dict:
    return {
        "name": "t",
        "out_dir": str(tmp / "runs"),
        "models": {"target": f"{SPEC}:good", "allow_random_weights": True},
        "layers": [{"name": "fc8"}, {"name": "conv2", "units": "0-3"}],
        "sampler": {"method": "pixel", "steps": 2, "chains_per_unit": 2, "start": "random"},
        "facets": {"real_images": None},
        "compute": {"device": "cpu"},
    }


GEN = {"models": {"generator": f"{SPEC}:generator"}, "sampler": {"method": "dgn_am"}}


@dataclass
class Case:
    id: str
    expect: tuple[str, ...]  # fragments of the one error line ({tmp} is the test's folder)
    change: dict | None = None  # deep-merged into the base config (DELETE removes a key)
    sets: tuple[str, ...] = ()  # --set overrides
    raw: str | None = None  # the config file's text instead of the base config
    setup: Callable[[Path], None] | None = None
    path: str | None = None  # another config path ({tmp}/...)
    merge: tuple[dict, ...] = ()  # more changes, applied after ``change``


def _fmt(obj, tmp: Path):
    if isinstance(obj, str):
        return obj.replace("{tmp}", str(tmp))
    if isinstance(obj, dict):
        return {k: _fmt(v, tmp) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_fmt(v, tmp) for v in obj)
    return obj


def _merge(data: dict, change: dict) -> dict:
    for key, value in change.items():
        if value is DELETE:
            data.pop(key, None)
        elif isinstance(value, dict) and isinstance(data.get(key), dict):
            _merge(data[key], value)
        else:
            data[key] = copy.deepcopy(value)
    return data


def _config_file(case: Case, tmp: Path) -> str:
    if case.setup:
        case.setup(tmp)
    if case.path:
        return _fmt(case.path, tmp)
    path = tmp / "c.yaml"
    if case.raw is not None:
        path.write_text(_fmt(case.raw, tmp))
    else:
        data = base_config(tmp)
        for change in ((case.change or {}), *case.merge):
            _merge(data, _fmt(change, tmp))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Every check must fail before Ray starts: starting it is a test failure."""
    import ray

    def refuse(*_a, **_k):
        raise AssertionError("ray.init was called: the bad input was not caught before Ray started")

    monkeypatch.setattr(ray, "init", refuse)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, expect, tmp: Path) -> None:
    text = out + err
    assert code == 2, f"exit {code}, expected 2:\n{text}"
    assert "Traceback" not in text, text
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("atlas: warning: ")]  # random weights
    assert len(lines) == 1 and lines[0].startswith("atlas: error: "), text
    assert text.count("atlas: error:") == 1, text
    for fragment in expect:
        assert _fmt(fragment, tmp) in lines[0], f"{fragment!r} not in: {lines[0]}"
    assert not (tmp / "runs").exists(), "something was written"


# ------------------------------------------------------------------------------------------- setups


def _folder(tmp: Path, files: dict[str, bytes]) -> None:
    folder = tmp / "imgs"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _png(tmp: Path) -> bytes:
    from PIL import Image

    path = tmp / "_one.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    data = path.read_bytes()
    path.unlink()
    return data


def empty_folder(tmp: Path) -> None:
    (tmp / "imgs").mkdir()


def text_only_folder(tmp: Path) -> None:
    _folder(tmp, {"notes.txt": b"not an image"})


def corrupt_image_folder(tmp: Path) -> None:
    _folder(tmp, {"a.png": _png(tmp), "b.png": _png(tmp), "bad.png": b"\x89PNG\r\n\x1a\n truncated"})


def good_folder(tmp: Path) -> None:
    _folder(tmp, {f"{i}.png": _png(tmp) for i in range(3)})


def a_file(tmp: Path) -> None:
    (tmp / "file.png").write_bytes(_png(tmp))


def nan_code_stats(tmp: Path) -> None:
    from atlas.models.codes import CodeStats

    stats = CodeStats.from_codes(torch.rand(20, 16), "test")
    stats.upper[3] = float("nan")
    stats.save(tmp / "stats.pt")


def corrupt_weights(tmp: Path) -> None:
    (tmp / "w.pt").write_text("these are not tensors")


def other_net_weights(tmp: Path) -> None:
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp / "w.pt")


def broken_module(tmp: Path) -> None:
    (tmp / "broken_factories.py").write_text("def build(:\n    pass\n")
    sys.path.insert(0, str(tmp))


def binary_config(tmp: Path) -> None:
    (tmp / "bin.yaml").write_bytes(b"\xff\xfe\x00\x01\x80garbage")


def config_dir(tmp: Path) -> None:
    (tmp / "cfgdir").mkdir()


# ------------------------------------------------------------------------------- config-level cases

CONFIG_CASES = [
    Case("missing file", ("config file '{tmp}/missing.yaml' not found",), path="{tmp}/missing.yaml"),
    Case("config is a dir", ("is a directory",), setup=config_dir, path="{tmp}/cfgdir"),
    Case("binary config", ("is unreadable", "UTF-8"), setup=binary_config, path="{tmp}/bin.yaml"),
    Case("invalid yaml", ("is not valid YAML at line",), raw="layers: [\nname: x\n"),
    Case("yaml list", ("must hold a mapping",), raw="- 1\n- 2\n"),
    Case("yaml nested past the recursion limit", ("nests too deeply",), raw="a: " + "[" * 5000 + "]" * 5000),
    Case("empty file", ("holds no keys (empty or comments only)",), raw=""),
    Case("comments only", ("holds no keys",), raw="# nothing here\n"),
    Case(
        "unknown key",
        ("unknown config key 'sampler.stepz'", "did you mean 'steps'"),
        {"sampler": {"stepz": 3}},
    ),
    Case("unknown top key", ("unknown config key 'sampel'", "did you mean 'sampler'"), {"sampel": {}}),
    Case(
        "a key one level too high",
        ("unknown config key 'steps' (did you mean 'sampler.steps'?)",),
        {"steps": 5},
    ),
    Case(
        "toy-world dae as the generator",
        ("models.generator: 'toyworld:dae' is the toy world's dae, not a generator; use toyworld:generator",),
        sets=("models.generator=toyworld:dae",),
    ),
    Case(
        "toy-world target as the generator",
        ("models.generator: 'toyworld:target' is the toy world's target, not a generator",),
        sets=("models.generator=toyworld:target", "sampler.start=random"),
    ),
    Case(
        "toy-world generator as the dae",
        ("models.dae: 'toyworld:generator' is the toy world's generator, not a dae; use toyworld:dae",),
        sets=("models.dae=toyworld:generator",),
    ),
    Case(
        "unknown toy-world component",
        ("models.target: unknown toy-world component 'gen'", "valid here: toyworld:target"),
        sets=("models.target=toyworld:gen",),
    ),
    Case(
        "unknown model key",
        ("unknown config key 'models.target.weight'", "did you mean 'weights'"),
        {"models": {"target": {"spec": f"{SPEC}:good", "weight": "x.pt"}}},
    ),
    Case(
        "unknown preprocess key",
        ("models.target.preprocess.sizes", "did you mean 'size'"),
        {"models": {"target": {"spec": f"{SPEC}:good", "preprocess": {"sizes": 32}}}},
    ),
    Case(
        "unknown layer key",
        ("layers.0.unit'", "did you mean 'units'"),
        {"layers": [{"name": "fc8", "unit": 3}]},
    ),
    Case(
        "steps not a number",
        ("sampler.steps: expected an integer, got 'many'",),
        {"sampler": {"steps": "many"}},
    ),
    Case("steps zero", ("sampler.steps: value 0 is out of range; must be >= 1",), {"sampler": {"steps": 0}}),
    Case("steps huge", ("sampler.steps", "<= 100000"), {"sampler": {"steps": 10**9}}),
    Case("chains huge", ("sampler.chains_per_unit", "<= 1024"), {"sampler": {"chains_per_unit": 5000}}),
    Case(
        "eps3 inf",
        ("sampler.ppgn_h.eps3: inf is not a finite number",),
        raw=None,
        sets=("sampler.ppgn_h.eps3=.inf",),
    ),
    Case("lr nan", ("sampler.dgn_am.lr: nan is not a finite number",), sets=("sampler.dgn_am.lr=.nan",)),
    Case("overflowing float", ("sampler.pixel.lr", "not a finite number"), sets=("sampler.pixel.lr=1e999",)),
    Case("negative inf", ("sampler.pixel.tv", "not a finite"), sets=("sampler.pixel.tv=-.inf",)),
    Case(
        "absurd eps1",
        ("sampler.ppgn_h.eps1: value 1e+30 is out of range; must be <= 10000",),
        sets=("sampler.ppgn_h.eps1=1e30",),
    ),
    Case(
        "l2 decay > 1",
        ("sampler.dgn_am.l2_decay: value 1.5 is out of range",),
        {"sampler": {"dgn_am": {"l2_decay": 1.5}}},
    ),
    Case("negative noise", ("sampler.start_noise", ">= 0"), {"sampler": {"start_noise": -0.1}}),
    Case(
        "method typo",
        ("sampler.method: invalid value 'ppgn'", "did you mean 'ppgn_h'"),
        {"sampler": {"method": "ppgn"}},
    ),
    Case(
        "start typo", ("sampler.start", "did you mean 'facet_seeded'"), {"sampler": {"start": "facet-seeded"}}
    ),
    Case(
        "bool as string", ("facets.enabled: expected true/false, got 'yes'",), {"facets": {"enabled": "yes"}}
    ),
    Case(
        "empty range",
        ("layers.0.units: range '5-2' is empty",),
        {"layers": [{"name": "fc8", "units": "5-2"}]},
    ),
    Case(
        "garbage units",
        ("layers.0.units: invalid unit selection 'first ten'",),
        {"layers": [{"name": "fc8", "units": "first ten"}]},
    ),
    Case(
        "negative unit",
        ("layers.0.units: unit index -1 is negative",),
        {"layers": [{"name": "fc8", "units": -1}]},
    ),
    Case(
        "empty unit list",
        ("layers.0.units: invalid unit list []",),
        {"layers": [{"name": "fc8", "units": []}]},
    ),
    Case(
        "mixed unit list",
        ("layers.0.units: invalid unit list",),
        {"layers": [{"name": "fc8", "units": [1, "x"]}]},
    ),
    Case(
        "float unit",
        ("layers.0.units: invalid unit selection 1.5",),
        {"layers": [{"name": "fc8", "units": 1.5}]},
    ),
    Case("name dotdot", ("name: '..' is not a valid run name", "not starting with '.'"), {"name": ".."}),
    Case("name dot", ("name: '.' is not a valid run name",), {"name": "."}),
    Case("name hidden", ("name: '.hidden' is not a valid run name",), {"name": ".hidden"}),
    Case("name with slash", ("name: '../escape' is not a valid run name",), {"name": "../escape"}),
    Case("name empty", ("name: '' is not a valid run name",), {"name": ""}),
    Case("no layers", ("layers: no layers selected",), {"layers": []}),
    Case(
        "duplicate layer",
        ("layers: layer 'fc8' is listed twice",),
        {"layers": [{"name": "fc8"}, {"name": "fc8"}]},
    ),
    Case("empty layer name", ("layers.0.name: empty layer name",), {"layers": [{"name": ""}]}),
    Case(
        "layer name that cannot name files",
        ("layers.0.name: the layer 'conv 1' cannot name the run's files", "rename the module"),
        {"layers": [{"name": "conv 1"}]},
    ),
    Case(
        "layers not a list",
        ("layers: expected a list of mappings or of names (e.g. [fc8, conv4]), got 'fc8'",),
        {"layers": "fc8"},
    ),
    Case(
        "spec without scheme",
        ("models.target.spec: 'alexnet' is not a model spec",),
        {"models": {"target": "alexnet"}},
    ),
    Case(
        "a weights file as the dae's spec",  # a trial's `--set models.dae=mydae.pt`: the DAE's spec not named
        ("models.dae.spec: 'mydae.pt' is not a model spec", "dae:residual_mlp", "weights: FILE"),
        GEN,
        sets=("models.dae=mydae.pt",),
    ),
    Case(
        "target is a number",
        ("models.target: expected a spec string or a mapping, got 5",),
        {"models": {"target": 5}},
    ),
    Case("no target", ("models.target: no target given",), {"models": {"target": DELETE}}),
    Case(
        "no generator",
        ("models.generator: sampler.method 'dgn_am' needs a generator",),
        {"sampler": {"method": "dgn_am"}},
    ),
    Case(
        "no dae",
        ("models.dae: ppgn_h with prior: dae needs a DAE", "atlas train-dae trains one", "dae:residual_mlp"),
        GEN,
        merge=({"sampler": {"method": "ppgn_h"}},),
    ),
    Case(
        "identical chains",
        ("sampler.start_noise", "all 2 chains of a unit are identical", "chains_per_unit: 1"),
        GEN,
        merge=({"sampler": {"start": "mean"}},),
    ),
    Case(
        "device typo",
        ("compute.device: invalid device 'gpu'; valid: auto, cpu, cuda, cuda:N",),
        {"compute": {"device": "gpu"}},
    ),
    Case("fp16 on cpu", ("compute.autocast: fp16 needs a CUDA device",), {"compute": {"autocast": "fp16"}}),
    Case(
        "mean of 2 values",
        ("models.target.preprocess.mean: expected 3 values",),
        {"models": {"target": {"spec": f"{SPEC}:good", "preprocess": {"mean": [0.5, 0.5]}}}},
    ),
    Case(
        "zero std",
        ("models.target.preprocess.std.1: value 0.0 is out of range; must be > 0",),
        {"models": {"target": {"spec": f"{SPEC}:good", "preprocess": {"std": [1, 0, 1]}}}},
    ),
    Case(
        "size zero",
        ("models.target.preprocess.size: value 0 is out of range",),
        sets=("models.target.preprocess.size=0",),
    ),
    Case(
        "size huge",
        ("models.target.preprocess.size", "<= 4096"),
        sets=("models.target.preprocess.size=100000",),
    ),
    Case(
        "generator output layer",
        ("models.generator.output_layer: only a target has an output layer",),
        {"models": {"generator": {"spec": f"{SPEC}:generator", "output_layer": "fc"}}},
    ),
    Case("set without =", ("--set 'sampler.steps': expected KEY=VALUE",), sets=("sampler.steps",)),
    Case("set missing item", ("--set layers.5.units: no list item '5'",), sets=("layers.5.units=0-1",)),
    Case("set into a value", ("'sampler.steps' is a value, not a section",), sets=("sampler.steps.x=3",)),
    Case("set negative seed", ("seed: value -1 is out of range",), sets=("seed=-1",)),
    Case(
        "an integer past 64 bits",
        ("ray.max_restarts: 99999999999999999999999 does not fit in 64 bits; give one from",),
        sets=("ray.max_restarts=99999999999999999999999",),
    ),
    Case("empty image path", ("facets.real_images: empty path",), {"facets": {"real_images": ""}}),
    Case(
        "set empty key part", ("--set 'sampler..steps=3': empty key or key part",), sets=("sampler..steps=3",)
    ),
    Case("empty out_dir", ("out_dir: empty; give a folder",), sets=("out_dir=",)),
    Case(
        "key given twice",
        ("config file '{tmp}/c.yaml': key 'sampler' appears twice (lines 2 and 4)",),
        raw="name: t\nsampler: {method: pixel}\nlayers: [fc8]\nsampler: {steps: 3}\n",
    ),
    Case(
        "negative pair unit",
        ("layers.0.pairs: [-1, 2] has a negative unit index",),
        {"layers": [{"name": "fc8", "pairs": [[-1, 2]]}]},
    ),
]


@pytest.mark.parametrize("mode", ["config", "run"])
@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_bad_config(case: Case, mode: str, tmp_path, capsys):
    path = _config_file(case, tmp_path)
    args = ["config", path] if mode == "config" else ["run", path, "--no-progress"]
    for s in case.sets:
        args += ["--set", _fmt(s, tmp_path)]
    assert_one_line_error(*run_cli(capsys, *args), case.expect, tmp_path)


# ----------------------------------------------------------------------------------- pre-flight cases

REAL = {"facets": {"real_images": "{tmp}/imgs"}}

PREFLIGHT_CASES = [
    Case(
        "own target that takes one picture at a time",  # a trial: the check passed, every unit failed
        (
            "models.target: a forward pass on a batch of 2 pictures failed (RuntimeError: mat1 and mat2",
            "at byo_factories.py:",  # the user's line, not torch's linear.py
            "keep the batch dimension (x.flatten(1)",
        ),
        {"models": {"target": f"{SPEC}:one_picture"}, "layers": [{"name": "classifier.4"}]},
    ),
    Case(
        "own generator without its code shape",  # a trial: pre-flight passed, then every worker died
        (
            "models.generator: spec 'python:tests.unit.byo_factories:generator_without_code_shape': the "
            "generator declares no code_shape; set module.code_shape = (D,)",
        ),
        {"models": {"generator": f"{SPEC}:generator_without_code_shape"}, "sampler": {"method": "dgn_am"}},
    ),  # fmt: skip
    Case(
        "own generator without its picture space",
        ("the generator declares no picture space; set generator_without_space.atlas_image_space",),
        {"models": {"generator": f"{SPEC}:generator_without_space"}, "sampler": {"method": "dgn_am"}},
    ),
    Case(
        "own generator drawing another size than it declares",
        ("it draws 32x32 pictures but its space says 64 px; declare the size it draws",),
        {"models": {"generator": f"{SPEC}:generator_of_another_size"}, "sampler": {"method": "dgn_am"}},
    ),
    Case(
        "own generator taking another code than it declares",
        (
            "it fails on a code of its code_shape (8,) (RuntimeError: mat1 and mat2 shapes cannot be",
            "declare the code_shape it takes",
        ),
        {"models": {"generator": f"{SPEC}:generator_of_another_code"}, "sampler": {"method": "dgn_am"}},
    ),  # fmt: skip
    Case(
        "a module instance as the factory",
        ("INSTANCE is an nn.Module instance, not a factory; name a function",),
        {"models": {"generator": f"{SPEC}:INSTANCE"}, "sampler": {"method": "dgn_am"}},
    ),
    Case(
        "range past the layer",
        ("layers.0.units: range 0-999999999 is out of range;", "has units 0-9"),
        {"layers": [{"name": "fc8", "units": "0-999999999"}]},
    ),
    Case(
        "unit past the layer",
        ("layers.1.units: unit 12 is out of range",),
        {"layers": [{"name": "fc8"}, {"name": "conv2", "units": [1, 12]}]},
    ),
    Case(
        "unknown layer",
        (
            "layers.0.name: unknown layer 'fc9'",
            "did you mean",
            "the network's layers are 'conv1', 'relu1', 'pool1', 'conv2',",  # a small network's, all of them
        ),
        {"layers": [{"name": "fc9"}]},
    ),
    Case(
        "kind conv on fc",
        ("layers.0.kind: 'conv' does not fit layer 'fc8'",),
        {"layers": [{"name": "fc8", "kind": "conv"}]},
    ),
    Case(
        "kind output on hidden",
        ("layers.0.kind: 'output'", "models.target.output_layer: fc7"),
        {"layers": [{"name": "fc7", "kind": "output"}]},
    ),
    Case("image folder missing", ("facets.real_images: image folder '{tmp}/imgs' not found;",), REAL),
    Case(  # a relative path says where it looked (a trial ran from another folder)
        "relative image folder missing",
        ("facets.real_images: image folder 'no-such-imgs' not found (from /",),
        {"facets": {"real_images": "no-such-imgs"}},
    ),
    Case(
        "image folder is a file",
        ("facets.real_images:", "is a file, not a directory"),
        {"facets": {"real_images": "{tmp}/file.png"}},
        setup=a_file,
    ),
    Case(
        "image folder empty",
        ("facets.real_images:", "holds no images (it is empty)"),
        REAL,
        setup=empty_folder,
    ),
    Case(
        "image folder without images",
        ("holds no images (it holds 1 other file)", ".png"),
        REAL,
        setup=text_only_folder,
    ),
    Case(
        "unreadable image",
        ("facets.real_images: image '{tmp}/imgs/bad.png'", "is unreadable"),
        REAL,
        setup=corrupt_image_folder,
    ),
    Case(
        "seeded start without images",
        ("sampler.start: 'facet_seeded' needs real images", "facets.real_images is null"),
        {"sampler": {"start": "facet_seeded"}},
    ),
    Case(
        "toyworld images for a python target",
        ("sampler.start: 'real' needs real images", "not a toy-world model"),
        {"sampler": {"start": "real"}, "facets": {"real_images": "toyworld"}},
    ),
    Case(
        "joint prior without code layer",
        ("models.code_layer: ppgn_h with prior: joint needs the target layer",),
        GEN,
        merge=({"sampler": {"method": "ppgn_h", "ppgn_h": {"prior": "joint"}}},),
    ),
    Case(
        "code layer wrong size",
        ("models.code_layer: layer 'fc7' outputs 32 values", "code has 16"),
        GEN,
        merge=({"models": {"code_layer": "fc7"}},),
    ),
    Case(
        "code layer unknown",
        ("models.code_layer: unknown layer 'relu9'",),
        GEN,
        merge=({"models": {"code_layer": "relu9"}},),
    ),
    Case(
        "seeded start without code layer",
        ("models.code_layer: sampler.start 'facet_seeded'",),
        GEN,
        setup=good_folder,
        merge=({"sampler": {"start": "facet_seeded"}}, REAL),
    ),
    Case(
        "composed pairs without code layer",
        ("models.code_layer: sampler.pair_start: composed reads", "sampler.pair_start: start"),
        GEN,
        merge=({"sampler": {"pair_start": "composed"}},),
    ),
    Case(
        "mean start without code stats",
        ("sampler.start: 'mean' needs the mean code", "models.code_stats"),
        GEN,
        merge=({"sampler": {"start": "mean", "start_noise": 0.1}},),
    ),
    Case("facet layer unknown", ("facets.layer: unknown layer 'relu8'",), {"facets": {"layer": "relu8"}}),
    Case(
        "output layer unknown",
        ("models.target.output_layer: unknown layer 'logits'",),
        {"models": {"target": {"spec": f"{SPEC}:good", "output_layer": "logits"}}},
    ),
    Case(
        "wrong preprocess size",
        (
            "models.target: python:",
            "(1x200 and 512x16)); set",  # no probe line of atlas's own
        ),
        {"models": {"target": {"spec": f"{SPEC}:undeclared", "preprocess": {"size": 20}}}},
    ),
    Case(  # a trial: neither the user's line nor the config key was named
        "wrong preprocess size, the user's forward",
        ("models.target: python:", "a forward pass at 20x20 px", "at byo_factories.py:", "preprocess.size"),
        {"models": {"target": {"spec": f"{SPEC}:no_grad", "preprocess": {"size": 20}}}},
    ),
    Case(
        "undeclared size",
        ("declares no input size; set models.target.preprocess.size",),
        {"models": {"target": f"{SPEC}:undeclared"}},
    ),
    Case(
        "factory raises",
        ("raises() raised ValueError: bad hyper-parameter",),
        {"models": {"target": f"{SPEC}:raises"}},
    ),
    Case(
        "factory returns int",
        ("not_a_module() returned int, not an nn.Module",),
        {"models": {"target": f"{SPEC}:not_a_module"}},
    ),
    Case(
        "bad declared space",
        ("atlas_image_space.size: expected an integer, got 'big'",),
        {"models": {"target": f"{SPEC}:bad_space"}},
    ),
    Case(
        "module with syntax error",
        ("importing 'broken_factories' failed (SyntaxError",),
        {"models": {"target": "python:broken_factories:build"}},
        setup=broken_module,
    ),
    Case(
        "missing module",
        ("cannot import module 'no_such_pkg.models'",),
        {"models": {"target": "python:no_such_pkg.models:build"}},
    ),
    Case(
        "missing factory",
        ("has no callable 'goood' (did you mean 'good'?)",),  # a typo: the factory meant, named
        {"models": {"target": f"{SPEC}:goood"}},
    ),
    Case(
        "scheme typo",
        ("unknown model scheme 'pyhton'", "did you mean 'python'"),
        {"models": {"target": "pyhton:x:y"}},
    ),
    Case(
        "torchvision typo",
        ("unknown torchvision model 'alexnett'", "did you mean alexnet"),
        {"models": {"target": "torchvision:alexnett"}},
    ),
    Case(
        "torchvision weights enum as torchvision prints it, unknown member",
        (
            "unknown weights 'AlexNet_Weights.NOPE' for torchvision:alexnet; valid: IMAGENET1K_V1 "
            "(or AlexNet_Weights.<name>), or a file",
        ),
        {"models": {"target": {"spec": "torchvision:alexnet", "weights": "AlexNet_Weights.NOPE"}}},
    ),
    Case(
        "generator as target",
        ("'deepsim:fc6' is a generator; it cannot be the target",),
        {"models": {"target": "deepsim:fc6"}},
    ),
    Case(
        "weights missing",  # random weights are allowed (the base): say how to have them for this one too
        ("weights file '{tmp}/none.pt' not found", "(or models.target.weights: null to run it on random"),
        {"models": {"target": {"spec": f"{SPEC}:good", "weights": "{tmp}/none.pt"}}},
    ),
    Case(
        "weights of two models missing, random weights not allowed",  # a trial found them in three reruns
        (
            "models.target: weights file '{tmp}/none.pt' not found",
            "; not found either: models.generator.weights (random weights, to test the plumbing: --set "
            "models.allow_random_weights=true --set models.target.weights=null --set "
            "models.generator.weights=null)",
        ),
        {
            "models": {
                "target": {"spec": f"{SPEC}:good", "weights": "{tmp}/none.pt"},
                "generator": {"spec": f"{SPEC}:generator", "weights": "{tmp}/gen.pt"},
                "allow_random_weights": False,
            },
            "sampler": {"method": "dgn_am"},
        },
    ),
    Case(
        "weights corrupt",
        ("weights file '{tmp}/w.pt' is corrupt",),
        {"models": {"target": {"spec": f"{SPEC}:good", "weights": "{tmp}/w.pt"}}},
        setup=corrupt_weights,
    ),
    Case(
        "weights of another net",
        ("does not match the model: missing keys",),
        {"models": {"target": {"spec": f"{SPEC}:good", "weights": "{tmp}/w.pt"}}},
        setup=other_net_weights,
    ),
    Case(
        "random weights not allowed",
        ("has no weights file", "allow_random_weights"),
        {"models": {"allow_random_weights": False}},
    ),
    Case(
        "code stats missing",
        ("code statistics file '{tmp}/stats.pt' not found",),
        GEN,
        merge=({"models": {"code_stats": "{tmp}/stats.pt"}},),
    ),
    Case(
        "toyworld with weights",
        ("toy-world models come from the toy-world cache; remove 'weights'",),
        GEN,
        merge=({"models": {"generator": {"spec": "toyworld:generator", "weights": "g.pt"}}},),
    ),
    Case(
        "cuda without a gpu",
        ("compute.device: 'cuda' requested but this machine has no visible CUDA device",),
        {"compute": {"device": "cuda"}},
    ),
    Case(
        "gpu workers without a gpu",
        ("ray.gpus_per_worker: 1 GPU(s) per worker requested",),
        {"compute": {"device": "auto"}, "ray": {"gpus_per_worker": 1}},
    ),
    Case(
        "ray address malformed",
        ("--address (or ray.address): Ray address 'not a host' is not valid", "host:port"),
        {"ray": {"address": "not a host"}},
    ),
    Case(
        "code stats with nan",
        ("code statistics file '{tmp}/stats.pt' holds non-finite values (nan or inf) in 'upper'",),
        GEN,
        setup=nan_code_stats,
        merge=({"models": {"code_stats": "{tmp}/stats.pt"}},),
    ),
    Case(
        "fp16 without a gpu",
        ("compute.autocast: fp16 needs a CUDA device and this machine has none",),
        {"compute": {"device": "auto", "autocast": "fp16"}},
    ),
]
_GPU_CASES = {"cuda without a gpu", "gpu workers without a gpu", "fp16 without a gpu"}


def _pf_params():
    for case in PREFLIGHT_CASES:
        yield pytest.param(case, "check", id=f"check-{case.id}")
        yield pytest.param(case, "run", id=f"run-{case.id}")


@pytest.mark.parametrize("case, mode", list(_pf_params()))
def test_bad_models_and_preflight(case: Case, mode: str, tmp_path, capsys, monkeypatch):
    if case.id in _GPU_CASES:  # the machine has no GPU, whatever machine runs the tests
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    path = _config_file(case, tmp_path)
    args = ["config", path, "--check"] if mode == "check" else ["run", path, "--no-progress"]
    try:
        result = run_cli(capsys, *args)
    finally:
        sys.path[:] = [p for p in sys.path if p != str(tmp_path)]
        sys.modules.pop("broken_factories", None)
    assert_one_line_error(*result, case.expect, tmp_path)


def test_a_ray_address_where_nothing_answers_is_one_line_before_ray_starts(tmp_path, capsys):
    """`atlas run` probes the address before ray.init (which would retry for minutes); `atlas config
    --check` stays off the network and passes."""
    path = _config_file(Case("nothing listening", (), {"ray": {"address": "127.0.0.1:1"}}), tmp_path)
    expect = ("nothing answers at Ray address '127.0.0.1:1'", "ray start --head")
    assert_one_line_error(*run_cli(capsys, "run", path, "--no-progress"), expect, tmp_path)
    assert run_cli(capsys, "config", path, "--check")[0] == 0
    assert not (tmp_path / "runs").exists()


def test_an_empty_ray_address_is_refused_not_a_local_run(tmp_path, capsys):
    """`--address "$HEAD"` with HEAD unset must not quietly start a local instance instead."""
    path = _config_file(Case("empty address", (), {}), tmp_path)
    expect = ("--address: empty; give the head's host:port", "leave it out for a local instance")
    assert_one_line_error(*run_cli(capsys, "run", path, "--address", " ", "--no-progress"), expect, tmp_path)
    assert not (tmp_path / "runs").exists()


def test_base_config_passes_preflight(tmp_path, capsys):
    """The base the cases change passes every check: each case fails for its own reason."""
    good_folder(tmp_path)
    for change in ({}, REAL, {**GEN, "models": {**GEN["models"], "code_layer": "relu6"}}):
        data = _merge(base_config(tmp_path), _fmt(change, tmp_path))
        (tmp_path / "ok.yaml").write_text(yaml.safe_dump(data))
        code, out, err = run_cli(capsys, "config", str(tmp_path / "ok.yaml"), "--check")
        assert code == 0, err
        passed = "# pre-flight passed: layers fc8 10 (10 units selected), conv2 8x16x16 (4 units selected)"
        assert passed in out and "facet layer relu7" in out
        assert "atlas: error" not in err and "RANDOM weights" in err
        drawn = "generator" in change.get("models", {})
        assert ("# pictures: the generator's 32x32 RGB -> 32x32 RGB (same size)" in out) == drawn
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("method", ["fourier", "maco", "accentuation"])
def test_a_seeded_start_without_images_is_no_error_for_methods_that_start_their_own_way(
    method, tmp_path, capsys
):
    """Fourier and MACO start from their own spectrum, accentuation from the unit's real images (else the
    mean picture): ``sampler.start`` (facet_seeded by default) does not concern them, so the lack of real
    images it would need is no reason to refuse them (a user's trial: a Fourier run refused for it)."""
    data = base_config(tmp_path)
    data["sampler"] |= {"method": method, "start": "facet_seeded"}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(data))
    code, out, err = run_cli(capsys, "config", str(tmp_path / "own.yaml"), "--check")
    assert code == 0 and "# pre-flight passed" in out, err


def test_another_networks_generator_needs_its_code_layer_only_to_read_real_codes(tmp_path, capsys):
    """DGN-AM from a random start needs only G and the target's gradient (README): the toy world's G, whose
    code is T's relu6, drives a target without such a layer, as a DeePSiM G does (a user's trial was told
    ``unknown layer 'relu6'`` for a key they never set). A seeded start reads real images' codes, so it
    still asks for the layer and says which one G reads."""
    good_folder(tmp_path)
    data = base_config(tmp_path) | {"layers": [{"name": "fc", "units": "0-1"}]}
    data["models"] = {
        "target": f"{SPEC}:in_place",
        "generator": "toyworld:generator",
        "allow_random_weights": True,
    }
    data["sampler"] |= {"method": "dgn_am"}
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(data))
    code, out, err = run_cli(capsys, "config", str(tmp_path / "gen.yaml"), "--check")
    assert code == 0, err
    assert "# pre-flight passed: layers fc 5" in out and "no code layer" in out
    sets = ["--set", "sampler.start=facet_seeded", "--set", f"facets.real_images={tmp_path / 'imgs'}"]
    code, out, err = run_cli(capsys, "config", str(tmp_path / "gen.yaml"), "--check", *sets)
    expect = ("models.code_layer: sampler.start 'facet_seeded'", "toyworld:generator reads 'relu6' of the")
    assert_one_line_error(code, out, err, expect, tmp_path)
    # a target with a layer of G's name that is not G's code (16 values, not 256): no code layer either (a
    # trial's own network with a 128-wide relu6 was refused), and a seeded start says it is not G's code
    data["models"]["target"], data["layers"] = f"{SPEC}:good", [{"name": "fc8", "units": "0-1"}]
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(data))
    code, out, err = run_cli(capsys, "config", str(tmp_path / "gen.yaml"), "--check")
    assert code == 0 and "no code layer" in out, err
    code, out, err = run_cli(capsys, "config", str(tmp_path / "gen.yaml"), "--check", *sets)
    expect = ("toyworld:generator reads 'relu6' of the network it was trained on, not G's code there",)
    assert_one_line_error(code, out, err, expect, tmp_path)


def test_a_target_that_views_its_conv_output_runs_in_the_default_memory_format(tmp_path, capsys):
    """``x.view(x.size(0), -1)`` of a conv output fails in channels_last (CPU default): a trial's network
    passed the check and then failed in every worker, and with channels_last off lost its real images to a
    permuted (non-contiguous) image batch. Said once, and the run draws its pictures in the default format
    (run_atlas turns compute.channels_last off when the pre-flight reports ``contiguous_only``)."""
    good_folder(tmp_path)
    data = base_config(tmp_path) | {"layers": [{"name": "classifier.4", "units": "0-1"}]}
    data["models"]["target"] = f"{SPEC}:views_flat"
    data["facets"] = {"real_images": str(tmp_path / "imgs"), "top_k_real": 2}
    (tmp_path / "view.yaml").write_text(yaml.safe_dump(data))
    code, out, err = run_cli(capsys, "config", str(tmp_path / "view.yaml"), "--check")
    assert code == 0, err
    said = "models.target fails in the channels_last memory format (RuntimeError: view size is not compatible"
    assert said in err and "at byo_factories.py:" in err and "use .reshape or .flatten there" in err
    code, out, err = run_cli(capsys, "config", str(tmp_path / "view.yaml"), "--check", "--set",
                             "compute.channels_last=false")  # fmt: skip
    assert code == 0 and "channels_last memory format" not in err, err
    from atlas.config import load_config, replace
    from atlas.pipeline.models_setup import build_bundle, build_models, make_engine
    from atlas.pipeline.preflight import preflight_models

    cfg = load_config(tmp_path / "view.yaml")
    models = build_models(cfg)
    assert preflight_models(cfg, models).contiguous_only  # atlas run turns channels_last off
    from atlas.pipeline.preflight import _channels_last_note

    gpu = replace(cfg, compute=replace(cfg.compute, device="cuda"))  # auto there: contiguous, nothing to say
    assert _channels_last_note(gpu, models.target) == []
    forced = replace(gpu, compute=replace(gpu.compute, channels_last=True))
    assert _channels_last_note(forced, models.target)
    cfg = replace(cfg, compute=replace(cfg.compute, channels_last=False))
    engine = make_engine(cfg, build_bundle(cfg), torch.device("cpu"))
    (result,) = engine.map_units("classifier.4", [0], seed=0)
    assert result.status == "ok" and len(result.real_topk) == 2  # its real images read (contiguous)


# ------------------------------------------------------------------------------------- atlas layers

LAYERS_CASES = [
    (
        "torchvision weights of another model",  # a trial: online, AlexNet's own DEFAULT would have loaded
        ["torchvision:alexnet", "--weights", "ResNet50_Weights.DEFAULT"],
        (
            "weights 'ResNet50_Weights.DEFAULT' are not torchvision:alexnet's",
            "valid: IMAGENET1K_V1 (or AlexNet_Weights.<name>), or a file",
        ),
    ),
    ("default size too large", [f"{SPEC}:undeclared"], ("a forward pass at 224x224 px", "--size N")),
    ("size too small", [f"{SPEC}:good", "--size", "8"], ("a forward pass at 8x8 px", "--size N")),
    ("size zero", [f"{SPEC}:good", "--size", "0"], ("--size: 0 is not a usable input size",)),
    ("size of a generator", ["deepsim:fc6", "--size", "32"], ("--size: deepsim:fc6 is a generator",)),
    ("factory raises", [f"{SPEC}:raises"], ("raises() raised ValueError",)),
    ("factory exits", [f"{SPEC}:exits"], ("exits() raised SystemExit: 3",)),
    ("scheme typo", ["torchvison:alexnet"], ("unknown model scheme 'torchvison'",)),
    ("no scheme", ["alexnet"], ("spec: 'alexnet' is not a model spec",)),
    (
        "weights missing",
        [f"{SPEC}:good", "--weights", "{tmp}/none.pt"],
        ("weights file '{tmp}/none.pt' not found",),
    ),
    ("toyworld weights", ["toyworld:target", "--weights", "x.pt"], ("remove 'weights'",)),
    ("bad declared space", [f"{SPEC}:bad_space"], ("atlas_image_space.size",)),
]


@pytest.mark.parametrize("args, expect", [c[1:] for c in LAYERS_CASES], ids=[c[0] for c in LAYERS_CASES])
def test_bad_layers(args, expect, tmp_path, capsys):
    result = run_cli(capsys, "layers", *[_fmt(a, tmp_path) for a in args])
    assert_one_line_error(*result, expect, tmp_path)


def test_layers_uses_the_declared_size_and_says_when_it_assumes(capsys):
    code, out, _ = run_cli(capsys, "layers", f"{SPEC}:good")
    assert code == 0 and "input space: 32x32" in out and "assumed" not in out
    code, out, _ = run_cli(capsys, "layers", "python:atlas.examples.tiny_cnn:build")
    assert code == 0 and "input space: 64x64" in out and "fc8" in out
    code, out, _ = run_cli(capsys, "layers", f"{SPEC}:undeclared", "--size", "32")
    assert code == 0 and "input space: 32x32" in out
    # a network that takes one picture at a time lists its layers, and is said to be one `atlas run` refuses
    code, out, err = run_cli(capsys, "layers", f"{SPEC}:one_picture")
    assert code == 0 and "classifier.4" in out
    assert "atlas: warning: models.target: a forward pass on a batch of 2 pictures failed" in err
    assert err.strip().endswith("atlas run refuses it") and err.count("\n") == 1
    assert run_cli(capsys, "layers", f"{SPEC}:good")[2] == ""  # none for a network that takes batches


# ------------------------------------------------------------------------------ as a user sees it


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["config", "{cfg}", "--set", "name=.."], "name: '..' is not a valid run name"),
        (["config", "{cfg}", "--check", "--set", "layers.0.units=0-999999999"], "range 0-999999999"),
        (["layers", f"{SPEC}:undeclared"], "a forward pass at 224x224 px"),
    ],
    ids=["name", "units", "layers"],
)
def test_subprocess_stderr_is_one_line(args, fragment, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(tmp_path)))
    proc = subprocess.run(
        [sys.executable, "-m", "atlas", *[a.replace("{cfg}", str(cfg)) for a in args]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("atlas: error: ") and fragment in proc.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------- atlas bootstrap

BOOTSTRAP_CASES = [
    (
        "ship with a cache dir",
        ["--ship", "--cache-dir", "{tmp}/cache"],
        ("--ship trains in a temporary cache",),
    ),
    ("ship reader with a cache dir", ["--ship-reader", "--cache-dir", "{tmp}/c"], ("drop --cache-dir",)),
    ("both ship flags", ["--ship", "--ship-reader"], ("--ship and --ship-reader exclude each other",)),
    ("ship with retrain", ["--ship", "--retrain"], ("already trains from scratch; drop --retrain",)),
    # outputs checked before anything trains; /proc passes a permission check as root, but takes no file
    # (for others it is not writable: either way a one-line error naming the option)
    ("json in /proc", ["--json", "/proc/atlas-x/r.json"], ("--json: ", " /proc ", "choose another path")),
    ("json a directory", ["--json", "{tmp}"], ("--json:", "is a directory, not a file")),
    ("cache dir in /proc", ["--cache-dir", "/proc/atlas-x"], ("--cache-dir: ", " /proc ", "another path")),
]


@pytest.mark.parametrize(
    "args, expect", [c[1:] for c in BOOTSTRAP_CASES], ids=[c[0] for c in BOOTSTRAP_CASES]
)
def test_bootstrap_flags_refused_before_training(args, expect, tmp_path, capsys, monkeypatch):
    """Refused before anything trains or is written (the shipped weights above all)."""
    import atlas.toyworld
    import atlas.toyworld.api as api

    def refuse(*_a, **_k):
        raise AssertionError("training started: the flags were not checked first")

    # the package first: its names load lazily from api, which must not be patched yet (else the patch is
    # what monkeypatch would put back)
    monkeypatch.setattr(atlas.toyworld, "bootstrap", refuse)  # what the command calls for a plain bootstrap
    for name in ("ship", "ship_reader", "bootstrap"):
        monkeypatch.setattr(api, name, refuse)
    result = run_cli(capsys, "bootstrap", "--preset", "micro", *[_fmt(a, tmp_path) for a in args])
    assert_one_line_error(*result, expect, tmp_path)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "c").exists()


def test_bootstrap_never_writes_its_report_over_its_own_config(tmp_path, capsys, monkeypatch):
    import atlas.toyworld

    monkeypatch.setattr(atlas.toyworld, "bootstrap", lambda *_a, **_k: pytest.fail("it went on"))
    config = tmp_path / "c.yaml"
    config.write_text("name: x\ntoyworld: {preset: micro}\nmodels: {target: toyworld:target}\n")
    before = config.read_text()
    result = run_cli(capsys, "bootstrap", "--config", str(config), "--json", str(config))
    assert_one_line_error(*result, ("--json:", "would overwrite the command's own input (--config"), tmp_path)
    assert config.read_text() == before


@pytest.mark.parametrize("command", [["bootstrap", "--preset", "micro"], ["toyworld", "show", "--no-train"]])
def test_toyworld_commands_validate_a_whole_run_config(command, tmp_path, capsys, monkeypatch):
    """A run config handed to a toy-world command is checked whole, as `atlas run` checks it."""
    import atlas.toyworld

    monkeypatch.setattr(atlas.toyworld, "bootstrap", lambda *_a, **_k: pytest.fail("it went on"))
    monkeypatch.setattr(atlas.toyworld, "ToyWorld", lambda *_a, **_k: pytest.fail("it went on"))
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: x\nsamplr: {steps: 3}\nmodels: {target: toyworld:target}\nlayers: [{name: fc8}]\n")
    result = run_cli(
        capsys,
        *command,
        "--config",
        str(typo),
        *(["--out", str(tmp_path / "o")] if "show" in command else []),
    )
    assert_one_line_error(*result, ("unknown config key 'samplr' (did you mean 'sampler'?)",), tmp_path)


def test_an_atlas_cache_that_is_a_file_is_named_as_the_variable(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("ATLAS_CACHE", str(afile / "sub"))
    result = run_cli(capsys, "bootstrap", "--preset", "micro")
    assert_one_line_error(*result, (f"ATLAS_CACHE: {afile} is a file, not a directory",), tmp_path)


def test_a_config_cache_dir_that_is_a_file_is_named_as_the_key(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    config = tmp_path / "tw.yaml"
    config.write_text(
        f"toyworld: {{preset: micro, cache_dir: {afile}}}\n"
        "models: {target: toyworld:target, generator: toyworld:generator}\nlayers: [{name: fc8}]\n"
    )
    result = run_cli(capsys, "bootstrap", "--config", str(config))
    assert_one_line_error(*result, (f"toyworld.cache_dir (--cache-dir): {afile} is a file",), tmp_path)


def test_torchvision_weights_by_name_offline_is_one_line(tmp_path, capsys, monkeypatch):
    """A user's trial: torch.hub's 'Downloading: "https://download.pytorch.org/..."' line came before the
    one-line error of a machine without a network."""
    import urllib.error

    import torchvision.models._api as tv_api

    def offline(url, *args, **kwargs):
        sys.stderr.write(f'Downloading: "{url}" to /root/.cache/torch/hub/checkpoints/x.pth\n')
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    case = Case(
        "torchvision weights offline",
        ("could not fetch torchvision weights 'IMAGENET1K_V1' (URLError); no network?",),
        {"models": {"target": {"spec": "torchvision:resnet18", "weights": "IMAGENET1K_V1"}}},
    )
    path = _config_file(case, tmp_path)
    code, out, err = run_cli(capsys, "config", path, "--check")
    assert "Downloading" not in out + err
    assert_one_line_error(code, out, err, case.expect, tmp_path)


def test_a_run_folder_that_is_a_file_is_named_as_the_run_folder(tmp_path, capsys):
    """A user's trial: `out_dir: .../junkdir/bad2 is a file` named out_dir for the run folder out_dir/name."""
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "bad2").write_text("not a run")
    case = Case("run folder a file", (f"the run folder out_dir/name: {tmp_path}/junk/bad2 is a file",), {})
    path = _config_file(case, tmp_path)
    args = ["run", path, "--no-progress", "--set", f"out_dir={tmp_path}/junk", "--set", "name=bad2"]
    assert_one_line_error(*run_cli(capsys, *args), case.expect, tmp_path)
    assert (tmp_path / "junk" / "bad2").read_text() == "not a run"
    (tmp_path / "afile").write_text("x")  # out_dir itself a file: out_dir named
    args = ["run", path, "--no-progress", "--set", f"out_dir={tmp_path}/afile", "--set", "name=bad2"]
    assert_one_line_error(*run_cli(capsys, *args), (f"out_dir: {tmp_path}/afile is a file",), tmp_path)
    # and `atlas config --check`, which passed it (a trial: the run then failed after Ray's start)
    args = ["config", path, "--check", "--set", f"out_dir={tmp_path}/afile", "--set", "name=bad2"]
    assert_one_line_error(*run_cli(capsys, *args), (f"out_dir: {tmp_path}/afile is a file",), tmp_path)
    args = ["config", path, "--check", "--set", f"out_dir={tmp_path}/junk", "--set", "name=bad2"]
    assert_one_line_error(*run_cli(capsys, *args), case.expect, tmp_path)
