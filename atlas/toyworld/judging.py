"""The held-out judge J's verdicts on pictures: one rule for the worker's `units.judge_*` columns and for
every benchmark (issue 16).

Usage::

    judge = Judge(loaded_judge, device)
    classes, fines = judge(images)                 # images (N, H, W, 3) uint8 -> (N,), (N,)
    judge_verdict(judge, result.chains, unit=3)    # {"judge_label", "judge_correct", "judge_prob"}

A picture's class is the class with the most probability summed over its facets (J classifies fine,
facet-level labels); its fine verdict is J's top fine label. A unit's verdict is over its chains' last
pictures (diverged chains left out unless all diverged): correct when a majority shows the unit's class;
``judge_prob`` is that share and ``judge_label`` the most common fine verdict (a tie goes to a fine label
of the unit's own class: with two chains, one read right, the label names the class and ``judge_correct``,
which needs more than half, is false).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from atlas.models.loaded import LoadedModel


class Judge:
    """J's coarse (class) and fine (facet) verdicts on uint8 pictures."""

    def __init__(self, judge: LoadedModel, device: torch.device) -> None:
        self.model, self.device = judge, device
        judge.module.to(device)
        self.fine_to_class = torch.tensor(list(judge.extras["fine_to_class"]), device=device)  # type: ignore
        self.n_classes = int(self.fine_to_class.max()) + 1
        fine_names = judge.extras.get("fine_names") or [str(i) for i in range(len(self.fine_to_class))]
        self.fine_names: list[str] = [str(n) for n in fine_names]  # type: ignore[union-attr]

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (N, H, W, 3) uint8 -> (class verdicts (N,), fine verdicts (N,))."""
        per_class, p = self._probs(images)
        return per_class.argmax(1).cpu().numpy(), p.argmax(1).cpu().numpy()

    @torch.no_grad()
    def class_probs(self, images: np.ndarray) -> torch.Tensor:
        """images (N, H, W, 3) uint8 -> (N, classes) J's probabilities summed over each class's facets."""
        return self._probs(images)[0].cpu()

    def _probs(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float() / 255
        p = torch.softmax(self.model.module(self.model.space.encode(x)).float(), dim=1)  # (N, fine)
        per_class = torch.zeros(p.shape[0], self.n_classes, device=self.device)
        per_class.index_add_(1, self.fine_to_class, p)
        return per_class, p


def judge_verdict(judge: Judge, chains: Sequence[Any], unit: int) -> dict[str, Any] | None:
    """The unit's verdict from its chains' last pictures (see the module docstring); None without chains,
    and for a unit that is no class (a composite objective numbered after the classes, issue 17: its
    verdict would count a class it is not)."""
    if not chains or not 0 <= unit < judge.n_classes:
        return None
    kept = [c for c in chains if not c.diverged] or list(chains)
    classes, fines = judge(np.stack([c.last.image for c in kept]))
    hits = int((classes == unit).sum())
    counts = Counter(fines.tolist())
    most = max(counts.values())
    tied = [f for f, n in counts.items() if n == most]  # in first-seen order
    own = [f for f in tied if int(judge.fine_to_class[f]) == unit]  # a tie goes to the unit's own class
    label = (own or tied)[0]
    return {
        "judge_label": judge.fine_names[int(label)],
        "judge_correct": hits * 2 > len(kept),
        "judge_prob": hits / len(kept),
    }
