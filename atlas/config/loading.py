"""Config files and ``--set`` overrides: YAML read safely (a key given twice is refused), dotted
assignments applied, the result validated as a ``RunConfig``.
"""

from __future__ import annotations

import copy
import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from atlas.config.run import METHOD_SECTIONS, RunConfig
from atlas.config.sampler import SamplerConfig
from atlas.config.section import build
from atlas.errors import ConfigError


def apply_override(data: dict[str, Any], assignment: str) -> Any:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a nested mapping in place; list items by index, and
    the index one past a list's last item appends one (``--set "layers.2={name: conv4}"`` on two layers,
    or ``--set layers.2.name=conv4``). Returns what the value replaced (None where there was nothing)."""
    dotted, parts, value = _parse_assignment(assignment)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _descend(node, part, dotted, parts[: i + 1])
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) > len(node):
            raise ConfigError(f"--set {dotted}: no list item {last!r}; {_items(node)}")
        if int(last) == len(node):
            node.append(value)
            return None
        old, node[int(last)] = node[int(last)], value
        return old
    old = node.get(last)
    node[last] = value
    return old


def override_warnings(data: dict[str, Any], overrides: typing.Sequence[str]) -> list[str]:
    """One line for each ``--set KEY={...}`` that replaced a section holding keys the new mapping lacks
    (they go back to their defaults, README "--set"): a user who meant to change one key is told how; and
    one for each ``--set sampler.<method>...`` of a method section the run's ``sampler.method`` does not
    read (a user's trial set sampler.ga.population on a dgn_am run; a config file's own stale section, as
    demo.yaml's dgn_am, stays quiet)."""
    data = copy.deepcopy(dict(data or {}))
    lines = []
    for assignment in overrides:
        old = apply_override(data, assignment)
        dotted, _parts, new = _parse_assignment(assignment)
        if isinstance(old, dict) and isinstance(new, dict) and (dropped := [k for k in old if k not in new]):
            more = f" and {len(dropped) - 6} more" if len(dropped) > 6 else ""
            keys = ", ".join(map(str, dropped[:6])) + more
            lines.append(
                f"--set {dotted}={{...}} replaced the whole '{dotted}' section: {keys} went back to their "
                f"defaults; to change one key keep the rest with --set {dotted}.KEY=VALUE"
            )
    return _unused_sections(data, overrides) + lines


def _unused_sections(final: dict[str, Any], overrides: typing.Sequence[str]) -> list[str]:
    """The ``--set sampler.<section>...`` lines whose section the final ``sampler.method`` does not read
    (``final``: the config with every override applied)."""
    sampler = final.get("sampler") if isinstance(final.get("sampler"), dict) else {}
    method = sampler.get("method", SamplerConfig.model_fields["method"].default)
    lines = []
    for assignment in overrides:
        dotted = assignment.split("=", 1)[0].strip()
        parts = dotted.split(".")
        if len(parts) >= 2 and parts[0] == "sampler" and parts[1] in METHOD_SECTIONS and method != parts[1]:
            lines.append(
                f"--set {dotted}: sampler.method {method} does not read the sampler.{parts[1]} section (only "
                f"{parts[1]} does); it changes nothing"
            )
    return lines


def config_override_warnings(path: str | os.PathLike[str], overrides: typing.Sequence[str]) -> list[str]:
    """:func:`override_warnings` for a config file (read again: call after :func:`load_config` passed)."""
    return override_warnings(read_config_file(path), overrides)


def _parse_assignment(assignment: str) -> tuple[str, list[str], Any]:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set sampler.steps=50")
    dotted, raw = assignment.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(
            f"--set {assignment!r}: empty key or key part; expected KEY=VALUE with dotted keys, e.g. "
            "--set sampler.steps=50"
        )
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""  # noqa: S506 - a SafeLoader
    except (DuplicateKeyError, ExpansionError) as exc:
        raise ConfigError(f"--set {assignment!r}: {exc}") from None
    except yaml.YAMLError as exc:
        if raw.strip()[:1] in ("{", "[", '"', "'"):  # meant as a mapping, list or quoted text: say where
            raise ConfigError(
                f"--set {assignment!r}: the value is not valid YAML{_yaml_problem(exc)}; close every "
                "bracket and quote (inside double quotes a backslash starts an escape: use single quotes "
                "for paths), e.g. --set 'layers.0={name: fc8, units: [1, 2]}'"
            ) from None
        value = raw  # plain text YAML cannot read (e.g. `a: b`): taken as typed
    if parts[-1] == "name" and isinstance(value, int | float) and not isinstance(value, bool):
        value = raw.strip()  # a name is text as typed: `--set name=007` is run 007, not 7
    return dotted, parts, value


def _items(node: list[Any]) -> str:
    """What indices a list has, for an error about one it lacks."""
    has = f"it has items 0-{len(node) - 1}" if node else "it is empty"
    return f"{has} (item {len(node)} appends one)"


_MODEL_ROLES = [["models", role] for role in ("target", "generator", "dae", "encoder")]


def _descend(node: Any, part: str, dotted: str, path: list[str]) -> Any:
    """Child ``part`` of ``node`` (at ``path``); a spec string or nothing there becomes a mapping."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) > len(node):
            raise ConfigError(
                f"--set {dotted}: no list item {part!r} at '{'.'.join(path[:-1])}'; {_items(node)}"
            )
        if int(part) == len(node):  # one past the last item: a new one, set key by key
            node.append({})
        item = node[int(part)]
        if path[-2:-1] == ["layers"] and not isinstance(item, dict | list):  # `layers: [fc8]` shorthand
            item = node[int(part)] = {"name": item}
        if path[-3:-1] == ["models", "ensemble"] and isinstance(item, str):  # `ensemble: [SPEC]`
            item = node[int(part)] = {"spec": item}
        if not isinstance(item, dict | list):
            raise ConfigError(f"--set {dotted}: '{'.'.join(path)}' is a value, not a section")
        return item
    child = node.get(part)
    if isinstance(child, str) and path[-2:] in _MODEL_ROLES:  # `target: SPEC` shorthand
        child = node[part] = {"spec": child}
    if child is None:
        child = node[part] = {}
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set {dotted}: '{'.'.join(path)}' is a value, not a section")
    return child


def config_from_dict(data: dict[str, Any], overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Validate ``data`` with ``overrides`` applied to a copy of it (the caller's nested sections stay)."""
    data = copy.deepcopy(dict(data or {}))
    for assignment in overrides:
        apply_override(data, assignment)
    return build(RunConfig, data)


_YAML11_IMPLICIT_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:bool",  # YAML 1.1 reads yes/no/on/off as booleans; 1.2 only true/false
}
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
NAME_KEYS = ("name", "layers")  # a run's or layer's name (and a layer list's shorthand items): text as typed


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (YAML keeps the last silently)."""


MAX_CONFIG_VALUES = 100_000  # values a config may expand to: YAML aliases (&a, *a) repeat a value each use


class ExpansionError(yaml.YAMLError):
    """A document whose aliases expand it past :data:`MAX_CONFIG_VALUES` values (or into itself)."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int | None]) -> int:
    """How many values ``node`` becomes once every alias is expanded, counted on the composed graph (an
    alias is a shared node: sizes of shared nodes are memoized, so a billion-value "alias bomb" is counted
    in a few steps, never built). A node met again inside itself (a recursive alias) counts as too many."""
    key = id(node)
    if key in sizes:
        known = sizes[key]
        return MAX_CONFIG_VALUES + 1 if known is None else known
    sizes[key] = None  # in progress
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        total = 1
    sizes[key] = total = min(total, MAX_CONFIG_VALUES + 1)
    return total


def _uses_aliases(node: yaml.Node) -> bool:
    """Whether a node of the composed graph is reached twice (an alias, ``*name``, is a shared node)."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            return True
        seen.add(id(current))
        if isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)
    return False


FEWER_VALUES = (
    "a config holds a few hundred: select units by ranges ('0-199999') or `units: all`, not one by one"
)
MAX_CONFIG_BYTES = 1_000_000  # a config is a few kB; PyYAML takes about a minute for 15 MB


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping, naming it and both lines, and reads
    numbers, booleans and dates as YAML 1.2 does: ``010`` is ten (YAML 1.1: octal 8), ``1:30`` and
    ``2024-01-01`` stay text (YAML 1.1: 90 in base 60, a date), ``1e-3`` is a number (YAML 1.1: text), and
    ``yes``/``no``/``on``/``off`` are text (YAML 1.1: booleans; 1.2's are ``true``/``false``). A unit list
    ``010,011`` or a range typed ``1:3`` thus never selects other units than the ones written, and a run named
    ``yes`` is named so."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_IMPLICIT_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def get_single_node(self) -> yaml.Node | None:
        """The composed document, refused before it is built when its aliases expand it past
        :data:`MAX_CONFIG_VALUES` values (an "alias bomb" of nested aliases took minutes and gigabytes)."""
        node = super().get_single_node()  # type: ignore[no-untyped-call]
        if node is not None and _expanded_size(node, {}) > MAX_CONFIG_VALUES:
            if _uses_aliases(node):
                raise ExpansionError(
                    f"its aliases (*name) expand it to more than {MAX_CONFIG_VALUES:,} values (or into "
                    "itself); a config holds a few hundred: write the values out"
                )
            raise ExpansionError(f"it holds more than {MAX_CONFIG_VALUES:,} values; {FEWER_VALUES}")
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, value_node in node.value:  # names are text as typed: `name: 007`, `layers: [0.10]`
            if isinstance(key_node, yaml.ScalarNode) and key_node.value in NAME_KEYS:
                items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for item in items:
                    if isinstance(item, yaml.ScalarNode) and item.style is None and item.tag in _NUMBER_TAGS:
                        item.tag = "tag:yaml.org,2002:str"
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKeyError(
                    f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one (merge the two)"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    return int(loader.construct_scalar(node))  # decimal, leading zeros and all (the resolver's pattern)


_UniqueKeyLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_UniqueKeyLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_UniqueKeyLoader.add_constructor(_INT, _yaml12_int)
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what: " at line 2, column 9: found a tab character ..." (YAML's own words, one line)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = " ".join(str(getattr(exc, "problem", "") or "").split())
    if "'\\t'" in problem:
        problem += " (a tab: indent with spaces)"
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened is not None:  # e.g. "while parsing a flow sequence": where the "[" was opened
        problem += f" ({context} opened at line {opened.line + 1}, column {opened.column + 1})"
    return f"{where}: {problem}" if problem else where


def _check_config_path(p: Path) -> None:
    """A config path that names a regular file of a config's size; else one line saying what it is."""
    if p.is_dir():
        raise ConfigError(
            f"config path {str(p)!r} is a directory; pass a YAML file such as configs/demo.yaml"
        )
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} not found; pass a YAML file such as configs/demo.yaml")
    if not p.is_file():
        raise ConfigError(
            f"config path {str(p)!r} is not a regular file; pass a YAML file such as configs/demo.yaml"
        )
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:  # before a parse that would take minutes (a trial: 15 MB)
        raise ConfigError(
            f"config file {str(p)!r} is {size / 1e6:.1f} MB, past the 1 MB a config may be; {FEWER_VALUES}"
        )


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file: {}); one-line errors for a missing, unreadable,
    invalid or non-mapping file and for a key given twice."""
    p = Path(path).expanduser()  # '~/x.yaml' quoted, or after '=', reaches us unexpanded
    _check_config_path(p)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except (DuplicateKeyError, ExpansionError) as exc:
        raise ConfigError(f"config file {str(p)!r}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"config file {str(p)!r} is unreadable ({type(exc).__name__}); pass a UTF-8 YAML text file"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {str(p)!r} nests too deeply to be a config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML{_yaml_problem(exc)}") from None
    if data is None:  # an empty file, or comments only (load_config says so when no --set fills it)
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | os.PathLike[str], overrides: typing.Sequence[str] = ()) -> RunConfig:
    """Read a YAML config file, apply dotted overrides, validate. Raises ConfigError."""
    data = read_config_file(path)
    if not data and not overrides:  # say so, not "models.target: no target given"
        raise ConfigError(
            f"config file {str(path)!r} holds no keys (empty or comments only); start from configs/demo.yaml"
        )
    return config_from_dict(data, overrides)
