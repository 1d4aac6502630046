"""Quality gates of a trained toy world, measured on the held-out test split.

A prediction is right when it names the image's object, or either object of a two-object image
(``DataConfig.second_p``); ``details`` then adds T's and J's share of two-object images whose two most
probable classes are exactly the image's two (``t_both`` and ``j_both``: the ceiling of a two-unit picture).

Gate names (thresholds per preset in ``presets.GateThresholds``):
- ``t_acc``             T's class accuracy on real test images                      (>= threshold)
- ``target<k>_acc``     an ensemble member's (``--members``), held to ``t_acc``'s threshold
- ``j_fine_acc``        J's fine-label accuracy on real test images                 (>= threshold)
- ``t_recon_acc``       T's class accuracy on reconstructions G(E(x))               (>= threshold)
- ``j_recon_acc``       J's class accuracy (fine prediction -> its class) on G(E(x)) (>= threshold)
- ``j_facet_recon_acc`` J's fine-label accuracy on G(E(x)) of multifaceted classes  (>= threshold)
- ``dae_error_ratio``   DAE error / identity error on noisy held-out codes           (< threshold)

The attribute reader's gates (:func:`evaluate_reader`), its accuracy per attribute on real test images
(bins by the test split's own tertiles, as the concept vocabulary's):
- ``reader_class_acc`` class, ``reader_facet_acc`` fine label on the multifaceted classes' images,
  ``reader_colour_acc``, ``reader_position_acc`` (the 3 x 3 cell), ``reader_size_acc``,
  ``reader_distractor_acc``                                                         (>= threshold)
- ``reader_cover_iou`` its coverage map (pixels > 0.5) against the objects' masks: intersection / union
  summed over the split                                                             (>= threshold)
"""

from __future__ import annotations

from typing import Any

import torch

from atlas.toyworld.loops import judge_space, predict, reader_space, target_space, threads
from atlas.toyworld.shapes import CLASS_NAMES, FINE_TO_CLASS, MULTIFACETED
from atlas.toyworld.train_dae import dae_error_ratio
from atlas.toyworld.world import ToyWorld


def _gate(value: float, threshold: float, below: bool = False) -> dict[str, Any]:
    """``passes``: how the value must compare with the threshold ("<" for an error ratio, else ">="), in
    the JSON report as in the table (a pipeline read every gate as ">=")."""
    passed = value < threshold if below else value >= threshold
    return {
        "value": round(float(value), 4),
        "threshold": threshold,
        "passes": "<" if below else ">=",
        "passed": bool(passed),
    }


@torch.no_grad()
def evaluate(world: ToyWorld) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(gates, details): gate name -> {value, threshold, passed}; details: per-class numbers."""
    cfg, th = world.cfg, world.cfg.gates
    size = cfg.data.size
    test = world.data("test")
    x = test.rgb01()  # (N, 3, S, S)
    t, j, g, dae = (world.module(n) for n in ("target", "judge", "generator", "dae"))
    t_space, j_space = target_space(size), judge_space(size)
    f2c = torch.tensor(FINE_TO_CLASS)
    with threads():
        codes = world.codes("test")  # (N, D)
        recon = predict(g, codes)  # (N, 3, S, S) rgb01
        t_logits, j_logits = predict(t, t_space.encode(x)), predict(j, j_space.encode(x))  # (N, C), (N, F)
        t_real, j_real = t_logits.argmax(1), j_logits.argmax(1)
        t_rec_logits, j_rec_logits = predict(t, t_space.encode(recon)), predict(j, j_space.encode(recon))
        t_rec, j_rec = t_rec_logits.argmax(1), j_rec_logits.argmax(1)
        dae_err, ident_err = dae_error_ratio(dae, codes, cfg.dae.noise)
    multi = torch.isin(test.labels, torch.tensor(MULTIFACETED))
    second, second_fine = test.second_labels(), test.second_fine
    if second_fine is None:
        second_fine = torch.full_like(test.fine, -1)

    def right(pred: torch.Tensor, first: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return (pred == first) | ((pred == other) & (other >= 0))

    j_rec_cls_ok = right(f2c[j_rec], test.labels, second)
    gates = {
        "t_acc": _gate(right(t_real, test.labels, second).float().mean().item(), th.t_acc),
        "j_fine_acc": _gate(right(j_real, test.fine, second_fine).float().mean().item(), th.j_fine_acc),
        "t_recon_acc": _gate(right(t_rec, test.labels, second).float().mean().item(), th.t_recon_acc),
        "j_recon_acc": _gate(j_rec_cls_ok.float().mean().item(), th.j_recon_acc),
        "j_facet_recon_acc": _gate(
            right(j_rec, test.fine, second_fine)[multi].float().mean().item(), th.j_facet_recon_acc
        ),
        "dae_error_ratio": _gate(dae_err / max(ident_err, 1e-12), th.dae_error_ratio, below=True),
    }
    per_class = {
        name: round(j_rec_cls_ok[test.labels == c].float().mean().item(), 3)
        for c, name in enumerate(CLASS_NAMES)
    }
    details: dict[str, Any] = {
        "j_recon_acc_per_class": per_class,
        "recon_l1": round((recon - x).abs().mean().item(), 4),
        "dae_error": round(dae_err, 4),
        "identity_error": round(ident_err, 4),
    }
    two = second >= 0
    if two.any():  # both objects of a two-object picture: the real ones, and G's redraws (``_recon``)
        pair = torch.stack([test.labels[two], second[two]], 1).sort(1).values  # (K, 2)
        for suffix, tl, jl in (("", t_logits, j_logits), ("_recon", t_rec_logits, j_rec_logits)):
            j_fine = jl[two].softmax(1)  # (K, fine)
            j_probs = torch.zeros(len(j_fine), len(CLASS_NAMES)).index_add_(1, f2c, j_fine)
            for name, probs in (("t_both", tl[two].softmax(1)), ("j_both", j_probs)):
                top2 = probs.topk(2, dim=1).indices.sort(1).values
                details[name + suffix] = round((top2 == pair).all(1).float().mean().item(), 4)
    return gates, details


@torch.no_grad()
def evaluate_reader(world: ToyWorld) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(gates, details) of the attribute reader on the test split; details: accuracy per class."""
    from atlas.toyworld.concepts import attribute_targets
    from atlas.toyworld.reading import decode_heads

    th = world.cfg.gates
    test = world.data("test")
    one = test.single()  # the reader decodes one object's attributes: one-object images only
    truth = {k: v[one] for k, v in attribute_targets(test).items()}
    labels = test.labels[one]
    reader = world.module("reader")
    x = reader_space(world.cfg.data.size).encode(test.rgb01(one))
    with threads(1):
        parts = [decode_heads(reader, x[i : i + 500]) for i in range(0, len(x), 500)]
    got = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    multi = torch.isin(labels, torch.tensor(MULTIFACETED))
    right = {
        "class": got["cls"] == labels,
        "facet": (got["fine"] == truth["fine"])[multi],
        "colour": got["colour"] == truth["colour"],
        "position": (got["row"] == truth["row"]) & (got["col"] == truth["col"]),
        "size": got["size"] == truth["size"],
        "distractor": got["distractor"] == truth["distractor"],
    }
    gates = {
        f"reader_{k}_acc": _gate(v.float().mean().item(), getattr(th, f"reader_{k}_acc"))
        for k, v in right.items()
    }
    assert test.attributes is not None
    mask, cover = test.attributes.mask[one], got["cover"]  # (N, S, S) bool each
    iou = (mask & cover).sum().item() / max((mask | cover).sum().item(), 1)
    gates["reader_cover_iou"] = _gate(iou, th.reader_cover_iou)
    per_class = {
        name: round(right["class"][labels == c].float().mean().item(), 3)
        for c, name in enumerate(CLASS_NAMES)
    }
    return gates, {"reader_class_acc_per_class": per_class, "reader_here_acc": _here_accuracy(mask, cover)}


def _here_accuracy(mask: torch.Tensor, cover: torch.Tensor, stride: int = 4) -> dict[str, float]:
    """Per part of the here vocabulary (``concepts.here_parts``), the share of all stride x stride cells of
    all images where the coverage map's verdict equals the mask's; mask, cover (N, S, S) bool."""
    from atlas.sampling.concepts import here_parts

    def coverage(m: torch.Tensor) -> torch.Tensor:  # (N, S, S) -> every cell's share of object pixels
        return torch.nn.functional.avg_pool2d(m[:, None].float(), stride).flatten()

    truth, read = here_parts(coverage(mask)), here_parts(coverage(cover))
    return {part: round((truth[part] == read[part]).float().mean().item(), 4) for part in truth}


def evaluate_members(world: ToyWorld, names: list[str]) -> dict[str, dict[str, Any]]:
    """``<member>_acc`` for each ensemble member (``target2`` ...): its class accuracy on the real test
    images, held to T's own gate (``t_acc``): a member must read the world as well as T does."""
    test, size = world.data("test"), world.cfg.data.size
    x, second = target_space(size).encode(test.rgb01()), test.second_labels()
    out = {}
    for name in names:
        with threads():
            pred = predict(world.module(name), x).argmax(1)  # (N,)
        right = (pred == test.labels) | ((pred == second) & (second >= 0))
        out[f"{name}_acc"] = _gate(right.float().mean().item(), world.cfg.gates.t_acc)
    return out


def format_table(report: dict[str, Any]) -> str:
    """The gate table as aligned text lines."""
    w = max([len("all gates"), *map(len, report["gates"])])  # the longest gate name sets the column
    rows = [f"{'gate':<{w}} {'value':>8} {'threshold':>10}  result"]
    for name, g in report["gates"].items():
        op = "<" if name == "dae_error_ratio" else ">="
        result = "pass" if g["passed"] else "FAIL"
        rows.append(f"{name:<{w}} {g['value']:>8.4f} {op:>3} {g['threshold']:<6g}  {result}")
    # the stages that took time (loaded from the cache or the shipped weights: none)
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in report.get("seconds", {}).items() if v >= 0.05)
    rows.append(f"{'all gates':<{w}} {'PASSED' if report['passed'] else 'FAILED':>8}   ({secs})")
    return "\n".join(rows)
