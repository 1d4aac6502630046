"""The toy world's concept vocabulary: ground truth from the renderer as a labelled probe set (issue 16).

Usage::

    concepts = toy_concepts(data)            # ToyData with attributes -> ConceptSet over its N images

Concepts (each a set of images): ``class:<name>``; ``facet:<name>`` for the facets of multifaceted classes;
``colour:<name>`` (the object's palette colour); ``pos:<row>-<col>`` (object centre in a 3 x 3 grid of the
positions' tertiles); ``size:small|medium|large`` (radius tertiles); ``distractor`` (a dot of another colour);
the conjunctions ``<colour> <class>``; and the unions of two classes or two colours, ``class:ring|frame``,
``colour:red|orange`` (a unit that fires for rings and frames alike: Mu & Andreas 2020's compositional
explanations, OR of two concepts). Class, facet, colour, colour-and-class and union concepts are
*localizable*: a conv unit read at one place of its map is also scored on their place-bound twins
``<concept>@here`` and on the parts ``here:object|interior|edge|background`` at its cell
(``atlas.sampling.concepts.located``).

The attribute reader (``atlas.toyworld.reading``) decodes the same attributes from a picture;
:func:`attribute_targets` are its training targets and gate truth, :func:`picture_concepts` names what it
decoded in this vocabulary, and :func:`shows` says whether those satisfy a unit's label::

    picture_concepts(fine=8, colour=0, row=0, col=2, size=1, distractor=False)
    # ['class:pill', 'facet:pill/capsule', 'colour:red', 'pos:top-right', 'size:medium']
    shows(['class:pill', 'colour:red', ...], "red pill")   # True: both parts of the conjunction
    shows(['class:frame', ...], "class:ring|frame")         # True: one alternative of the union
    shows(['colour:red', 'here:object', ...], "colour:red@here")   # True: red, and the object is here
    shows([...], "dogs")                                    # None: not a toy-world concept
"""

from __future__ import annotations

import torch

from atlas.sampling.concepts import HERE, HERE_OBJECT, HERE_PARTS, ConceptSet
from atlas.toyworld.dataset import ToyAttributes, ToyData
from atlas.toyworld.shapes import CLASS_NAMES, FINE_NAMES, FINE_TO_CLASS, MULTIFACETED

COLOUR_NAMES = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")  # PALETTE order
ROWS, COLS, SIZES = ("top", "middle", "bottom"), ("left", "centre", "right"), ("small", "medium", "large")


ATOMIC_KINDS = ("class", "facet", "colour", "pos", "size")  # "<kind>:<value>" concepts, plus "distractor"
UNION_KINDS = {"class": CLASS_NAMES, "colour": COLOUR_NAMES}  # "<kind>:<a>|<b>": either value


def _tertile(x: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N,) long bin 0, 1, 2 by the values' own tertiles."""
    edges = torch.quantile(x.float(), torch.tensor([1 / 3, 2 / 3]))
    return torch.bucketize(x.float(), edges, right=True)


def toy_concepts(data: ToyData) -> ConceptSet:
    """The concept vocabulary over ``data``'s images (needs the renderer's attributes)."""
    a = data.attributes
    if a is None:
        raise ValueError("toy images without renderer attributes have no ground-truth concepts")
    cols: dict[str, torch.Tensor] = {}
    for c, name in enumerate(CLASS_NAMES):
        cols[f"class:{name}"] = data.labels == c
    for f, name in enumerate(FINE_NAMES):
        if FINE_TO_CLASS[f] in MULTIFACETED:
            cols[f"facet:{name}"] = data.fine == f
    cols.update(_attribute_columns(a))
    parts: dict[str, tuple[str, ...]] = {}
    for k, colour in enumerate(COLOUR_NAMES):
        for c, cls in enumerate(CLASS_NAMES):
            cols[f"{colour} {cls}"] = (a.colour == k) & (data.labels == c)
            parts[f"{colour} {cls}"] = (f"colour:{colour}", f"class:{cls}")
    for kind, values in UNION_KINDS.items():
        for i, a_name in enumerate(values):
            for b_name in values[i + 1 :]:
                alternatives = (f"{kind}:{a_name}", f"{kind}:{b_name}")
                cols[f"{kind}:{a_name}|{b_name}"] = cols[alternatives[0]] | cols[alternatives[1]]
                parts[f"{kind}:{a_name}|{b_name}"] = alternatives
    members = torch.stack(list(cols.values()), dim=1)
    localizable = tuple(n for n in cols if _is_localizable(n))
    return ConceptSet(list(cols), members, masks=a.mask.bool(), parts=parts, localizable=localizable)


def _is_localizable(name: str) -> bool:
    """Concepts about the object itself (class, facet, colour, colour-and-class, and the unions of two
    classes or colours): they have a place-bound twin ``<concept>@here`` for conv units
    (``sampling.concepts.located``); position, size and the distractor do not."""
    kind, sep, value = name.partition(":")
    if sep:
        return kind in ("class", "facet", "colour")
    colour, sep, cls = name.partition(" ")
    return bool(sep) and colour in COLOUR_NAMES and cls in CLASS_NAMES


def _attribute_columns(a: ToyAttributes) -> dict[str, torch.Tensor]:
    """colour, position (3 x 3), size and distractor concepts: name -> (N,) bool."""
    cols = {f"colour:{name}": a.colour == k for k, name in enumerate(COLOUR_NAMES)}
    row, col = _tertile(a.cy), _tertile(a.cx)
    for i, r in enumerate(ROWS):
        for j, c in enumerate(COLS):
            cols[f"pos:{r}-{c}"] = (row == i) & (col == j)
    size = _tertile(a.radius)
    cols.update({f"size:{name}": size == i for i, name in enumerate(SIZES)})
    cols["distractor"] = a.distractor.bool()
    return cols


def attribute_targets(data: ToyData) -> dict[str, torch.Tensor]:
    """Per image, the attribute values the reader decodes (``nets.READER_HEADS`` order): fine label, colour,
    row / column tertile of the centre, radius tertile (the split's own tertiles, as the concepts), and
    distractor (0/1): {name: (N,) long}."""
    a = data.attributes
    if a is None:
        raise ValueError("toy images without renderer attributes have no attribute targets")
    return {
        "fine": data.fine.long(),
        "colour": a.colour.long(),
        "row": _tertile(a.cy),
        "col": _tertile(a.cx),
        "size": _tertile(a.radius),
        "distractor": a.distractor.long(),
    }


def picture_concepts(fine: int, colour: int, row: int, col: int, size: int, distractor: bool) -> list[str]:
    """The atomic concepts of one picture's attributes: class, facet (multifaceted classes), colour,
    position, size, and ``distractor`` when present (conjunctions follow from class and colour)."""
    cls = FINE_TO_CLASS[fine]
    out = [f"class:{CLASS_NAMES[cls]}"]
    if cls in MULTIFACETED:
        out.append(f"facet:{FINE_NAMES[fine]}")
    out += [f"colour:{COLOUR_NAMES[colour]}", f"pos:{ROWS[row]}-{COLS[col]}", f"size:{SIZES[size]}"]
    return [*out, "distractor"] if distractor else out


def _atomic_values(kind: str) -> tuple[str, ...]:
    """The values of an atomic concept kind (``<kind>:<value>``)."""
    return {
        "class": CLASS_NAMES,
        "facet": tuple(FINE_NAMES[f] for f in range(len(FINE_NAMES)) if FINE_TO_CLASS[f] in MULTIFACETED),
        "colour": COLOUR_NAMES,
        "pos": tuple(f"{r}-{c}" for r in ROWS for c in COLS),
        "size": SIZES,
    }[kind]


def requirements(label: str) -> list[frozenset[str]] | None:
    """The alternative sets of atomic concepts a picture must show to show ``label``: one set for an atomic
    concept or a conjunction ``<colour> <class>`` (which needs both), one per alternative for a union
    ``class:ring|frame``; a place-bound ``<concept>@here`` needs the concept's set and ``here:object``, a
    part ``here:edge`` itself (a picture's ``here:`` concepts are read at its unit's cell); None when
    ``label`` is not a toy-world concept (e.g. a user's folder name)."""
    if label.endswith(HERE) and _is_localizable(label[: -len(HERE)]):
        inner = requirements(label[: -len(HERE)])
        return None if inner is None else [need | {HERE_OBJECT} for need in inner]
    if label == "distractor" or label in HERE_PARTS:
        return [frozenset({label})]
    kind, sep, value = label.partition(":")
    if sep and kind in UNION_KINDS and "|" in value:
        options = value.split("|")
        if len(options) == 2 and all(v in UNION_KINDS[kind] for v in options):
            return [frozenset({f"{kind}:{v}"}) for v in options]
        return None
    if sep and kind in ATOMIC_KINDS:
        return [frozenset({label})] if value in _atomic_values(kind) else None
    colour, sep, cls = label.partition(" ")
    if sep and colour in COLOUR_NAMES and cls in CLASS_NAMES:
        return [frozenset({f"colour:{colour}", f"class:{cls}"})]
    return None


def shows(concepts: list[str] | set[str], label: str) -> bool | None:
    """Whether a picture with these (decoded) atomic concepts shows ``label``; None when undecidable."""
    options = requirements(label)
    return None if options is None else any(need <= set(concepts) for need in options)
