"""Config validation: valid configs load; each bad input gives a one-line error naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from atlas.cli import main as cli_main
from atlas.config import (
    RunConfig,
    UnitSelection,
    config_from_dict,
    describe_fields,
    load_config,
    override_warnings,
)
from atlas.errors import ConfigError

pytestmark = pytest.mark.unit

BASE = {
    "name": "t",
    "models": {"target": "toyworld:target", "generator": "toyworld:generator", "dae": "toyworld:dae"},
    "layers": [{"name": "fc8"}, {"name": "conv3", "units": "0-3"}],
}


def cfg(**changes):
    data = {**BASE, **changes}
    return config_from_dict(data)


def test_valid_minimal_config_has_documented_defaults():
    c = cfg()
    assert isinstance(c, RunConfig)
    assert c.sampler.method == "dgn_am" and c.sampler.steps == 200
    assert c.models.target.spec == "toyworld:target"
    assert c.layers[0].units.all and c.layers[1].units.resolve(10) == [0, 1, 2, 3]
    assert all(doc for _key, _tp, _default, doc in describe_fields())


@pytest.mark.parametrize(
    "value, expected",
    [("all", None), ("0-2", [0, 1, 2]), ("1,4-5", [1, 4, 5]), ([3, 1], [3, 1]), (7, [7])],
)
def test_unit_selection_forms(value, expected):
    sel = UnitSelection.parse(value, "units")
    assert sel.resolve(10) == (list(range(10)) if expected is None else expected)


def test_overrides_apply_with_yaml_types():
    c = config_from_dict(
        BASE,
        [
            "sampler.steps=50",
            "sampler.ppgn_h.eps1=1e-3",
            "layers.0.units=0-1",
            "models.target.weights=/tmp/x.pt",
            "ray.address=null",
        ],
    )
    assert c.sampler.steps == 50 and c.sampler.ppgn_h.eps1 == pytest.approx(1e-3)
    assert c.layers[0].units.resolve(10) == [0, 1]
    assert c.models.target.weights == "/tmp/x.pt" and c.ray.address is None


def test_a_key_set_under_a_spec_string_keeps_the_spec():
    """`target: SPEC` is shorthand for {spec: SPEC}: `--set models.ROLE.weights=F` keeps the spec, for
    every model role and for each ensemble member given as a plain string."""
    data = {
        **BASE,
        "models": {
            **BASE["models"],
            "generator": "toyworld:generator",
            "encoder": "toyworld:target",
            "ensemble": ["toyworld:target2", {"spec": "toyworld:target3"}],
        },
    }
    c = config_from_dict(
        data,
        [
            "models.encoder.weights=/tmp/e.pt",
            "models.ensemble.0.weights=/tmp/m.pt",
            "models.ensemble.1.weights=/tmp/n.pt",
        ],
    )
    assert (c.models.encoder.spec, c.models.encoder.weights) == ("toyworld:target", "/tmp/e.pt")
    members = [(m.spec, m.weights) for m in c.models.ensemble]
    assert members == [("toyworld:target2", "/tmp/m.pt"), ("toyworld:target3", "/tmp/n.pt")]
    assert data["models"]["ensemble"][0] == "toyworld:target2"  # the caller's dict is left as it was


def test_a_toy_world_model_given_a_weights_file_is_not_offered_random_weights():
    """A trial: `--set models.target.weights=alexnet.pth` on the demo config was told to remove 'weights'
    and then offered random weights, which a toy-world model never needs."""
    from atlas.errors import ModelError
    from atlas.models.registry import load_run_model

    c = config_from_dict(BASE, ["models.target.weights=alexnet.pth"])
    with pytest.raises(ModelError) as caught:
        load_run_model(c, "target")
    assert str(caught.value).endswith("toy-world models come from the toy-world cache; remove 'weights'")


def test_atlas_config_shows_every_key_and_compact_units_and_reads_back_as_the_same_run(capsys):
    """A trial: `--set sampler.stop_at=0` vanished from `atlas config`'s print (the hashed form omits a newer
    key at its default) and `units: 0-99` printed 100 lines. The shown form has both, and read back it is
    the same config, with the same hash."""
    from atlas.pipeline.driver import config_hash

    sets = ["layers.0.units=0-99", "sampler.stop_at=0", "layers.1.units=[3, 1]"]
    demo = str(Path(__file__).parents[2] / "configs" / "demo.yaml")
    assert cli_main(["config", demo, *(a for s in sets for a in ("--set", s))]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["sampler"]["stop_at"] == 0.0 and shown["models"]["ensemble"] == []
    assert [layer["units"] for layer in shown["layers"][:2]] == ["0-99", "3,1"]
    assert config_hash(config_from_dict(shown)) == config_hash(load_config(demo, sets))


def test_numbers_and_names_read_as_written_yaml_12_not_yaml_11(tmp_path):
    """YAML 1.1 would read `010` as octal 8 and `1:3` as 63 in base 60 (other units than the ones written, and
    exit 0), and refuse a run or layer named `2024-01-01` or `4` as not text. Read as YAML 1.2 does: a
    leading zero is decimal, `a:b` stays text (and is refused where a number or range is due), names are
    the text typed."""
    c = config_from_dict(BASE, ["layers.0.units=010", "name=2024-01-01", "sampler.steps=020"])
    assert c.layers[0].units.resolve(20) == [10] and c.name == "2024-01-01" and c.sampler.steps == 20
    with pytest.raises(ConfigError, match="layers.1.units: invalid unit selection '1:3'"):
        config_from_dict(BASE, ["layers.1.units=1:3"])
    with pytest.raises(ConfigError, match="sampler.steps: expected an integer, got '1:30'"):
        config_from_dict(BASE, ["sampler.steps=1:30"])
    assert config_from_dict(BASE, ["name=123"]).name == "123"
    assert config_from_dict(BASE, ["layers.0.units=ALL"]).layers[0].units.all  # what it can only mean
    assert config_from_dict(BASE, ["name=007"]).name == "007"  # a name is the text typed, zeros and all
    assert config_from_dict(BASE, ["name=1.50"]).name == "1.50"
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: t\nmodels: {target: toyworld:target, generator: toyworld:generator}\n"
        "layers:\n  - {name: 4, units: [010, 011]}\n  - 07\n  - {name: 0.10}\n"
        "sampler: {dgn_am: {lr: 1e-3}}\n"
    )
    c = load_config(path)
    assert [layer.name for layer in c.layers] == ["4", "07", "0.10"]  # nested Sequential names as typed
    assert c.layers[0].units.resolve(20) == [10, 11]
    c = load_config(path, ["layers.1.units=0-2"])  # a shorthand item takes a key: it becomes a section
    assert c.layers[1].name == "07" and c.layers[1].units.resolve(20) == [0, 1, 2]
    assert c.sampler.dgn_am.lr == pytest.approx(1e-3)


BAD = [
    ({"sampler": {"stepz": 3}}, "unknown config key 'sampler.stepz' (did you mean 'steps'?)"),
    (
        {"sampler": {"step": 3}},
        "unknown config key 'sampler.step' (did you mean 'steps'?)",
    ),  # not ppgn_h.step
    ({"steps": 3}, "unknown config key 'steps' (did you mean 'sampler.steps'?)"),  # a key one level too high
    ({"bogus": 1}, "unknown config key 'bogus'"),
    (
        {"out_dir": "ftp://x/y"},
        "out_dir: unsupported storage scheme 'ftp://' in 'ftp://x/y'; use a local path",
    ),
    ({"out_dir": "s3://"}, "out_dir: 's3://' names no bucket; expected s3://bucket/prefix"),
    ({"out_dir": "gs:/bucket"}, "out_dir: 'gs:/bucket' names no bucket"),
    ({"sampler": {"steps": "many"}}, "sampler.steps: expected an integer, got 'many'"),
    ({"sampler": {"steps": 0}}, "sampler.steps: value 0 is out of range; must be >= 1"),
    ({"sampler": {"method": "dgnam"}}, "sampler.method: invalid value 'dgnam'"),
    ({"sampler": {"dgn_am": {"l2_decay": 1.5}}}, "sampler.dgn_am.l2_decay: value 1.5 is out of range"),
    ({"sampler": {"ppgn_h": {"eps1": -1}}}, "sampler.ppgn_h.eps1: value -1.0 is out of range"),
    ({"layers": [{"name": "fc8", "units": "5-2"}]}, "layers.0.units: range '5-2' is empty"),
    ({"layers": [{"name": "fc8", "units": "abc"}]}, "layers.0.units: invalid unit selection 'abc'"),
    ({"layers": [{"name": "fc8", "units": True}]}, "layers.0.units: invalid unit selection true;"),  # YAML's
    ({"layers": []}, "layers: no layers selected"),
    ({"layers": [{"name": "fc8"}, {"name": "fc8"}]}, "layers: layer 'fc8' is listed twice"),
    ({"models": {"target": "alexnet"}}, "spec: 'alexnet' is not a model spec"),
    ({"models": {"target": "nosuch:x"}}, "spec: unknown model scheme 'nosuch' in 'nosuch:x'; valid: "),
    (
        {"models": {"target": "toyworld:target"}},
        "models.generator: sampler.method 'dgn_am' needs a generator",
    ),
    ({"compute": {"autocast": "bf32"}}, "compute.autocast: invalid value 'bf32'"),
    ({"facets": {"enabled": "yes"}}, "facets.enabled: expected true/false, got 'yes'"),
    ({"name": "a b"}, "name: 'a b' is not a valid run name"),
    ({"seed": 1.5}, "seed: expected an integer, got 1.5"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0][:30] for _, m in BAD])
def test_bad_configs_give_one_line_errors(change, message):
    with pytest.raises(ConfigError) as info:
        cfg(**change)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys in 'sampler': method, steps, chains_per_unit"):
        cfg(sampler={"nope": 1})


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_from_dict(BASE, ["sampler.steps"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nlayers: [fc8\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3, column 1: expected ',' or '\]'") as err:
        load_config(bad)
    assert "flow sequence opened at line 2, column 9" in str(err.value)  # where the "[" was opened
    bad.write_text("name: t\nsampler:\n\tsteps: 3\n")
    with pytest.raises(ConfigError, match=r"at line 3, column 1: .*\(a tab: indent with spaces\)"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listy)


def test_unit_selection_out_of_range():
    with pytest.raises(ConfigError, match="unit 12 is out of range; the layer has units 0-9"):
        UnitSelection.parse([1, 12], "units").resolve(10)


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
    assert configs, "no configs shipped"
    for path in configs:
        load_config(path)


# A config with non-default values of every kind: integers given for floats, numeric text, unit ranges and
# lists, a string shorthand, a preprocess override. Its hash was computed with the dataclass config that
# preceded pydantic; runs resume (and refuse to mix results) by comparing it, so it must never change.
PINNED = {
    "name": "pinned",
    "seed": 7,
    "models": {
        "target": {
            "spec": "toyworld:target",
            "preprocess": {"size": 64, "mean": [1, 2, 3], "std": [1, 1, 2]},
        },
        "generator": "toyworld:generator",
        "dae": "toyworld:dae",
    },
    "layers": [{"name": "fc8", "units": "0-3,9"}, {"name": "conv3", "units": [5, 1]}, "fc7"],
    "sampler": {"method": "ppgn_h", "steps": 50, "dgn_am": {"lr": 2}, "ppgn_h": {"eps1": "1e-3"}},
    "facets": {"real_images": None, "distance": 0.2},
}


def test_config_hash_is_stable():
    from atlas.pipeline.driver import config_hash

    c = config_from_dict(PINNED)
    assert config_hash(c) == "4e81abced732daca"  # the name left out (a run copied to another folder)
    data = c.to_dict()
    assert data["layers"][0]["units"] == [0, 1, 2, 3, 9] and data["sampler"]["dgn_am"]["lr"] == 2.0
    assert "stop_at" not in data["sampler"] and "output_layer" not in data["models"]["target"]
    assert config_hash(config_from_dict(data)) == config_hash(c)  # to_dict round-trips


def test_replace_validates_and_direct_construction_raises_config_errors():
    from atlas.config import ModelConfig, SamplerConfig, replace

    c = cfg()
    changed = replace(c, sampler=replace(c.sampler, steps=7))
    assert changed.sampler.steps == 7 and c.sampler.steps == 200 and changed.layers == c.layers
    with pytest.raises(ConfigError, match=r"^steps: value 0 is out of range; must be >= 1$"):
        replace(c.sampler, steps=0)
    with pytest.raises(ConfigError, match=r"unknown config key 'noise'"):
        replace(c.sampler.dgn_am, noise=0.1)
    with pytest.raises(ConfigError, match=r"^spec: 'alexnet' is not a model spec"):
        ModelConfig(spec="alexnet")
    with pytest.raises(ConfigError, match=r"^start_noise: expected a number, got 'x'$"):
        SamplerConfig(start_noise="x")


def test_an_unknown_key_is_reported_before_other_errors():
    with pytest.raises(ConfigError, match="unknown config key 'sampler.stepz'"):
        cfg(sampler={"steps": -1, "stepz": 3})


def test_a_start_pool_makes_mean_start_chains_differ():
    """start: mean without noise gives identical chains (refused), unless each chain picks its start from its
    own pool of noisy draws."""
    with pytest.raises(ConfigError, match="chains of a unit are identical"):
        cfg(sampler={"start": "mean", "chains_per_unit": 2})
    c = cfg(sampler={"start": "mean", "chains_per_unit": 2, "start_pool": 8})
    assert c.sampler.start_pool == 8
    with pytest.raises(ConfigError, match="chains of a unit are identical"):
        cfg(sampler={"start": "mean", "chains_per_unit": 2, "start_pool": 8, "start_pool_noise": 0})
    # PPGN-h's released eps3 (1e-17) is lost in float32 codes: its chains from one start stay identical too
    ppgn = {"method": "ppgn_h", "start": "mean", "chains_per_unit": 2}
    with pytest.raises(ConfigError, match=r"identical \(ppgn_h adds no noise of its own: eps3 1e-17 is lost"):
        cfg(sampler={**ppgn, "ppgn_h": {"eps3": 1e-17}})
    assert cfg(sampler={**ppgn, "ppgn_h": {"eps3": 1e-3}}).sampler.ppgn_h.eps3 == 1e-3


def test_messages_stay_readable_for_long_empty_and_missing_values():
    """A pasted 300-character value is cut in the message, an empty section says so in words (not 'None'),
    and a list index beyond the list names the indices it has."""
    long = "x" * 300
    with pytest.raises(ConfigError) as err:
        config_from_dict(BASE, [f"sampler.method={long}"])
    assert len(str(err.value)) < 250 and "(302 chars)" in str(err.value)
    with pytest.raises(ConfigError, match=r"name: 'x{40}'\.\.\. is 300 characters long; a run name takes at"):
        config_from_dict(BASE, [f"name={long}"])
    with pytest.raises(
        ConfigError, match=r"sampler.steps: expected an integer, got nothing \(an empty value\)"
    ):
        config_from_dict(BASE, ["sampler.steps=null"])
    with pytest.raises(ConfigError, match=r"no list item '5' at 'layers'; it has items 0-1 \(item 2 appends"):
        config_from_dict(BASE, ["layers.5.units=3"])


def test_the_index_after_a_lists_last_item_appends_one():
    """Growing a run by a layer from the command line took retyping the whole layers list (a user's trial:
    ``--set "layers.3={...}"`` was 'no list item'); one past the end appends, whole or key by key."""
    whole = config_from_dict(BASE, ["layers.2={name: conv2, units: 0-1}"])
    by_key = config_from_dict(BASE, ["layers.2.name=conv2", "layers.2.units=0-1"])
    assert [lc.name for lc in whole.layers] == [lc.name for lc in by_key.layers] == ["fc8", "conv3", "conv2"]
    assert whole.to_dict()["layers"] == by_key.to_dict()["layers"]
    with pytest.raises(ConfigError, match=r"no list item '4' at 'layers'"):  # only the next one
        config_from_dict(BASE, ["layers.4.name=conv2"])


def test_a_set_mapping_that_drops_a_sections_keys_is_said(tmp_path, capsys):
    """``--set sampler={steps: 5}`` replaces the whole section (README): the keys it drops went back to
    their defaults, which a user who meant to change one key did not expect, so each such --set says
    which; a mapping that keeps every key, or a key set alone, says nothing."""
    data = {**BASE, "sampler": {"method": "ppgn_h", "steps": 80, "dgn_am": {"lr": 0.6, "l2_decay": 0.9}}}
    lines = override_warnings(data, ["sampler={steps: 5}", "sampler.steps=7", "layers.1={name: conv2}"])
    assert len(lines) == 2, lines
    assert "'sampler' section: method, dgn_am went back to their defaults" in lines[0]
    assert "--set sampler.KEY=VALUE" in lines[0]
    assert "'layers.1' section: units went back" in lines[1]
    kept = override_warnings(data, ["sampler.dgn_am={lr: 1, l2_decay: 0.5}", "sampler.steps=9"])
    assert not [line for line in kept if "replaced the whole" in line], kept
    assert data["sampler"]["steps"] == 80  # the caller's mapping stays as it was
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli_main(["config", str(path), "--set", "sampler.dgn_am={lr: 1}"]) == 0
    err = capsys.readouterr().err
    assert "atlas: warning: --set sampler.dgn_am={...} replaced the whole 'sampler.dgn_am' section" in err
    assert "l2_decay went back to their defaults" in err


def test_storage_options_reach_the_uris_on_out_dirs_store_only():
    """The storage: section describes out_dir's store: a weights URI there opens with it, one elsewhere (a
    public gs:// file, another bucket's region) with its own defaults; with a local out_dir its S3 settings
    reach S3 URIs."""
    minio = ["storage.endpoint_override=http://minio:9000", "storage.region=eu-west-1"]
    c = config_from_dict(BASE, [*minio, "out_dir=s3://runs/atlas"])
    assert c.storage_options_for("s3://runs/w/alexnet.pth")["region"] == "eu-west-1"
    other_bucket = c.storage_options_for("s3://weights/alexnet.pth")
    assert other_bucket["endpoint_override"] == "http://minio:9000" and "region" not in other_bucket
    assert c.storage_options_for("gs://public/alexnet.pth") == {}
    assert c.storage_options_for("/local/alexnet.pth") == {} and c.storage_options_for(None) == {}
    local = config_from_dict(BASE, minio)
    assert local.storage_options_for("s3://weights/a.pth")["endpoint_override"] == "http://minio:9000"
    assert local.storage_options_for("gs://weights/a.pth") == {}


@pytest.mark.parametrize(
    "endpoint", ["http://[::1", "ftp://minio:9000", "http://minio:port", "http://h/path"]
)
def test_an_endpoint_that_is_not_a_url_is_refused_at_the_check(endpoint):
    """A trial's `http://[::1` passed `atlas config --check` and failed at the run's first write, with an
    AWS error that named no key."""
    with pytest.raises(ConfigError, match=rf"^storage.endpoint_override: '{re.escape(endpoint)}' is not an "):
        config_from_dict(BASE, [f"storage.endpoint_override={endpoint}"])
    for fine in ("http://127.0.0.1:9000", "https://s3.example.com", "minio:9000"):
        assert config_from_dict(BASE, [f"storage.endpoint_override={fine}"]).storage.endpoint_override == fine


def test_a_store_it_cannot_reach_is_named_with_the_endpoint_it_went_through():
    from atlas.errors import AtlasError
    from atlas.store.location import Location

    class Unreachable:
        def get_file_info(self, path):
            raise OSError("AWS Error NETWORK_CONNECTION during HeadObject: Could not resolve hostname")

    loc = Location("s3://b/x", {"endpoint_override": "http://minio.internal:9000"}, lazy=True)
    loc._fs = Unreachable()
    with pytest.raises(AtlasError, match=r"^cannot reach s3://b/x/run.json through storage.endpoint_"):
        loc.exists("run.json")


def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    """Nested YAML aliases (each level 10x the last: 10^9 values at depth 9) are counted on the composed
    graph, not expanded: one line, at once; a recursive alias too; ordinary aliases still load."""
    lines = ["name: bomb", "models: {target: toyworld:target}", "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*lines, "layers: [{name: fc8, units: *a8}]"]) + "\n")
    with pytest.raises(
        ConfigError, match=r"bomb.yaml': its aliases \(\*name\) expand it to more than 100,000"
    ):
        load_config(bomb)
    loop = tmp_path / "loop.yaml"
    loop.write_text("name: r\nx: &x [1, *x]\n")
    with pytest.raises(ConfigError, match="expand it to more than 100,000 values"):
        load_config(loop)
    with pytest.raises(ConfigError, match=r"--set 'layers.0.units=.*expand it to more than"):
        load_config(_small(tmp_path), ["layers.0.units=" + _inline_bomb()])
    fine = tmp_path / "fine.yaml"
    fine.write_text(
        "name: ok\nmodels: {target: toyworld:target}\nunits: &u [0, 1, 2]\nlayers: [{name: fc8, units: *u}]\n"
    )
    with pytest.raises(
        ConfigError, match="unknown config key 'units'"
    ):  # the alias loaded; the extra key is refused
        load_config(fine)


def test_a_config_of_too_many_values_says_so_without_blaming_aliases(tmp_path, monkeypatch):
    """A trial: a literal list of 200,000 units was told "its aliases (*name) expand it", though it had
    none, and a 15 MB one parsed for minutes: the first is named as what it is, the second refused by size
    before it is parsed."""
    from atlas.config import loading

    monkeypatch.setattr(loading, "MAX_CONFIG_VALUES", 1_000)  # the limit's logic, on a list quick to parse
    many = tmp_path / "many.yaml"
    units = ", ".join(map(str, range(1_200)))
    many.write_text(
        f"name: many\nmodels: {{target: toyworld:target}}\nlayers: [{{name: fc8, units: [{units}]}}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(many)
    said = str(err.value)
    assert "it holds more than 1,000 values" in said and "ranges ('0-199999')" in said, said
    assert "alias" not in said and "\n" not in said
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\n# " + "x" * 1_500_000 + "\n")
    with pytest.raises(ConfigError, match=r"huge.yaml' is 1.5 MB, past the 1 MB a config may be"):
        load_config(huge)


def _small(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("name: s\nmodels: {target: toyworld:target}\nlayers: [{name: fc8}]\n")
    return path


def _inline_bomb() -> str:
    levels = ["&l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)]
    return "[" + ", ".join(levels) + "]"


def test_set_values_read_as_yaml_1_2_and_a_broken_one_is_named(tmp_path):
    """A user's trial: `--set name=yes` read as True ("expected a string, got True") although the README
    says values read as YAML 1.2 (whose booleans are true/false only); and a value with an unclosed
    bracket or quote was taken as plain text, so the error blamed another key (the layer's name)."""
    c = config_from_dict(BASE, ["name=yes", "layers.0.name=on", "sampler.diversity=0"])
    assert c.name == "yes" and c.layers[0].name == "on"
    assert config_from_dict(BASE, ["facets.enabled=false"]).facets.enabled is False
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "facets": {"enabled": True}}).replace("name: t\n", "name: off\n"))
    loaded = load_config(path)
    assert loaded.name == "off" and loaded.facets.enabled is True
    for value, culprit in [
        ("layers.0={name: fc8, units: [1, 2", "while parsing a flow sequence"),
        ("sampler={steps: 5", "while parsing a flow mapping"),
        ("name='abc", "while scanning a quoted scalar"),
    ]:
        with pytest.raises(
            ConfigError, match=r"--set .*: the value is not valid YAML at line 1, column \d+"
        ) as e:
            config_from_dict(BASE, [value])
        assert culprit in str(e.value)
    assert config_from_dict(BASE, ["facets.real_images=a: b: c"]).facets.real_images == "a: b: c"  # as typed
    with pytest.raises(
        ConfigError, match=r"layers: expected a list of mappings or of names \(e.g. \[fc8, conv4\]\)"
    ):
        config_from_dict(BASE, ["layers=fc8"])


def test_a_set_into_a_method_section_the_run_does_not_read_is_said():
    """A user's trial: ``--set sampler.ga.population=30`` on a dgn_am run changed nothing, unsaid. The
    method is the run's final one (a --set of it counts); a config file's own stale section stays quiet."""
    data = {**BASE, "sampler": {"method": "dgn_am", "ga": {"population": 12}}}
    said = override_warnings(data, ["sampler.ga.population=30", "sampler.dgn_am.lr=0.5"])
    assert said == [
        "--set sampler.ga.population: sampler.method dgn_am does not read the sampler.ga section (only ga "
        "does); it changes nothing"
    ]
    assert override_warnings(data, ["sampler.ga.population=30", "sampler.method=ga"]) == []
    maco = override_warnings(data, ["sampler.method=maco", "sampler.fourier.init_std=0.5"])  # its own start
    assert maco == [
        "--set sampler.fourier.init_std: sampler.method maco does not read the sampler.fourier section (only "
        "fourier does); it changes nothing"
    ]
    assert override_warnings(data, ["sampler.steps=3"]) == []  # the file's own ga section: quiet


def test_pair_start_composed_needs_a_code_method_and_no_start_pool():
    with pytest.raises(ConfigError, match=r"^sampler.pair_start: composed reads the composite picture back"):
        config_from_dict(BASE, ["sampler.pair_start=composed", "sampler.method=pixel"])
    with pytest.raises(ConfigError, match="sampler.start_pool draws starts of its own"):
        config_from_dict(BASE, ["sampler.pair_start=composed", "sampler.start_pool=8"])
    assert config_from_dict(BASE, ["sampler.pair_start=composed"]).sampler.pair_start == "composed"
    assert "pair_start" not in config_from_dict(BASE, []).sampler.to_dict()  # the default: out of the hash
    # said when nothing it applies to is in the config (a contrast, or no composite at all: a trial)
    from atlas.config.advice import config_warnings

    said = "sampler.pair_start: composed starts the chains of two-unit composites of positive weights"
    for layers in ([{"name": "fc8"}], [{"name": "fc8", "objectives": ["3 - 5", "1 + 2 + 4"]}]):
        assert any(
            w.startswith(said)
            for w in config_warnings(cfg(layers=layers, sampler={"pair_start": "composed"}))
        )
    for layers in ([{"name": "fc8", "pairs": [[1, 2]]}], [{"name": "fc8", "objectives": ["0.7*3 + 0.3*7"]}]):
        assert not any(
            w.startswith(said)
            for w in config_warnings(cfg(layers=layers, sampler={"pair_start": "composed"}))
        )


def test_an_unused_dae_warns_unless_the_config_sets_ppgn_h_up_for_it():
    """models.dae with dgn_am is likely a mistake, and said; a config that also sets sampler.ppgn_h keeps
    the DAE for `--set sampler.method=ppgn_h` (the shipped pairs configs warned at every run: a trial)."""
    import types

    from atlas.pipeline.preflight import _model_warnings

    target = types.SimpleNamespace(random_weights=False, extras={})
    models = types.SimpleNamespace(target=target, generator=None, dae=None, encoder=None, ensemble=[])
    data = {**BASE, "models": {**BASE["models"], "dae": "toyworld:dae"}}
    plain = config_from_dict(data, ["sampler.method=dgn_am"])
    assert any(w.startswith("models.dae is set but unused by sampler.method dgn_am") for w in
               _model_warnings(plain, models))  # fmt: skip
    switch = config_from_dict({**data, "sampler": {**data.get("sampler", {}), "ppgn_h": {"lr": 0.02}}},
                              ["sampler.method=dgn_am"])  # fmt: skip
    assert not any("models.dae" in w for w in _model_warnings(switch, models))
