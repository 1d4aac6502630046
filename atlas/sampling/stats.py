"""Per-chain statistics, kept on the device for a whole batch and moved to the CPU only when recorded.

Usage (inside the chain loop)::

    tracker = ChainTracker(batch_size, record_every, device)
    tracker.observe(t, img, readout, value)                    # every step: best image, last image
    tracker.record(t, readout, code_norm, residual_norm, grad_norm, img)   # every record_every steps
    tracker.snapshot(t, img, readout, mask)                    # PPGN snapshots above the threshold
    tracker.diverge(mask, t)                                   # NaN/Inf: freeze + flag, never stop the batch

Trajectory rows hold ``TRAJECTORY_KEYS``: step, activation, log_prob, rank, top_competitor (strongest
competing unit), code_norm (||state||), prior_residual (||R(h) - h||, NaN without a prior),
grad_norm (||d objective / d state||), image_change (RMS change of the picture since the previous row).
"""

from __future__ import annotations

import math

import torch

from atlas.models.spaces import to_uint8_images
from atlas.sampling.results import ImageRecord

TRAJECTORY_KEYS = (
    "step",
    "activation",
    "log_prob",
    "rank",
    "top_competitor",
    "code_norm",
    "prior_residual",
    "grad_norm",
    "image_change",
)


def per_chain_norm(x: torch.Tensor | None, b: int, device: torch.device) -> torch.Tensor:
    """(B, *S) -> (B,) L2 norm per chain; NaN where x is None."""
    if x is None:
        return torch.full((b,), float("nan"), device=device)
    return x.detach().float().flatten(1).norm(dim=1)


def finite_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, *S) -> (B,) bool: every element of the row is finite."""
    return torch.isfinite(x.detach()).flatten(1).all(dim=1) if x.dim() > 1 else torch.isfinite(x.detach())


class ChainTracker:
    def __init__(self, batch_size: int, record_every: int, device: torch.device) -> None:
        b = batch_size
        self.b, self.record_every, self.device = b, record_every, device
        self.best_value = torch.full((b,), float("-inf"), device=device)
        self.best_step = torch.zeros(b, dtype=torch.long, device=device)
        self.best_img: torch.Tensor | None = None  # (B, 3, H, W)
        self.best_read: dict[str, torch.Tensor] = {}
        self.last_img: torch.Tensor | None = None
        self.last_read: dict[str, torch.Tensor] = {}
        self.last_step = torch.zeros(b, dtype=torch.long, device=device)
        self.diverged = torch.zeros(b, dtype=torch.bool, device=device)
        self.diverged_at = [-1] * b
        self.stopped = torch.zeros(b, dtype=torch.bool, device=device)  # sampler.stop_at reached
        self.stop_step = torch.full((b,), -1, dtype=torch.long, device=device)  # when (-1: never)
        self.rows: list[list[dict]] = [[] for _ in range(b)]
        self.snapshots: list[list[ImageRecord]] = [[] for _ in range(b)]
        self._prev_recorded: torch.Tensor | None = None

    # ---- every step
    def observe(
        self, t: int, img: torch.Tensor, readout: dict[str, torch.Tensor], value: torch.Tensor
    ) -> None:
        """img (B, 3, H, W) detached rgb01; readout of unit_readout; value (B,) objective. Skips diverged."""
        img = img.detach().float()
        alive = ~self.diverged
        if self.best_img is None:
            self.best_img = img.clone()
            self.last_img = img.clone()
            self.best_read = {k: v.clone() for k, v in readout.items()}
            self.last_read = {k: v.clone() for k, v in readout.items()}
        better = alive & (value.detach().float() > self.best_value)
        self.best_value = torch.where(better, value.detach().float(), self.best_value)
        self.best_step = torch.where(better, torch.full_like(self.best_step, t), self.best_step)
        self.best_img = torch.where(better.view(-1, 1, 1, 1), img, self.best_img)
        self.last_img = torch.where(alive.view(-1, 1, 1, 1), img, self.last_img)
        self.last_step = torch.where(alive, torch.full_like(self.last_step, t), self.last_step)
        for k, v in readout.items():
            self.best_read[k] = torch.where(better, v, self.best_read[k])
            self.last_read[k] = torch.where(alive, v, self.last_read[k])

    def diverge(self, mask: torch.Tensor, t: int) -> None:
        """Flag chains (B,) bool as diverged at step t; they keep their last finite records."""
        new = mask & ~self.diverged
        if bool(new.any()):
            for i in torch.nonzero(new).flatten().tolist():
                self.diverged_at[i] = t
            self.diverged |= new

    def stop(self, mask: torch.Tensor, t: int) -> None:
        """Chains (B,) bool that reached their ``stop_at`` at step t: they move no more from here on."""
        new = mask & ~self.stopped
        self.stop_step = torch.where(new, torch.full_like(self.stop_step, t), self.stop_step)
        self.stopped |= new

    # ---- every record_every steps
    def record(
        self,
        t: int,
        readout: dict[str, torch.Tensor],
        code_norm: torch.Tensor,
        residual_norm: torch.Tensor,
        grad_norm: torch.Tensor,
        img: torch.Tensor,
    ) -> None:
        img = img.detach().float()
        if self._prev_recorded is None:
            change = torch.zeros(self.b, device=img.device)
        else:
            change = (img - self._prev_recorded).pow(2).flatten(1).mean(1).sqrt()
        self._prev_recorded = img
        cols = (
            torch.stack(
                [
                    readout["activation"].float(),
                    readout["log_prob"].float(),
                    readout["rank"].float(),
                    readout["top_competitor"].float(),
                    code_norm.float(),
                    residual_norm.float(),
                    grad_norm.float(),
                    change.float(),
                ],
                dim=1,
            )
            .cpu()
            .tolist()
        )  # (B, 8): one device->host copy per record
        alive = (~self.diverged).cpu().tolist()
        for i, c in enumerate(cols):
            if not alive[i]:
                continue
            self.rows[i].append(
                {
                    "step": t,
                    "activation": c[0],
                    "log_prob": c[1],
                    "rank": int(c[2]),
                    "top_competitor": int(c[3]),
                    "code_norm": c[4],
                    "prior_residual": c[5],
                    "grad_norm": c[6],
                    "image_change": c[7],
                }
            )

    # ---- snapshots (PPGN)
    def snapshot(
        self, t: int, img: torch.Tensor, readout: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> None:
        keep = mask & ~self.diverged
        if not bool(keep.any()):
            return
        idx = torch.nonzero(keep).flatten()
        images = to_uint8_images(img.detach()[idx]).numpy()
        read = {k: v[idx].cpu().tolist() for k, v in readout.items()}
        for j, i in enumerate(idx.tolist()):
            self.snapshots[i].append(
                ImageRecord(
                    t,
                    images[j],
                    float(read["activation"][j]),
                    float(read["log_prob"][j]),
                    int(read["rank"][j]),
                    "snapshot",
                )
            )

    # ---- end of the run
    def records(self) -> tuple[list[ImageRecord], list[ImageRecord], list[int]]:
        """-> (last records, best records, best steps), one per chain."""
        assert self.best_img is not None and self.last_img is not None
        last_u8 = to_uint8_images(self.last_img).numpy()
        best_u8 = to_uint8_images(self.best_img).numpy()
        lr = {k: v.cpu().tolist() for k, v in self.last_read.items()}
        br = {k: v.cpu().tolist() for k, v in self.best_read.items()}
        last_steps, best_steps = self.last_step.cpu().tolist(), self.best_step.cpu().tolist()
        last, best = [], []
        for i in range(self.b):
            last.append(
                ImageRecord(
                    last_steps[i],
                    last_u8[i],
                    _f(lr["activation"][i]),
                    _f(lr["log_prob"][i]),
                    int(lr["rank"][i]),
                    "last",
                )
            )
            best.append(
                ImageRecord(
                    best_steps[i],
                    best_u8[i],
                    _f(br["activation"][i]),
                    _f(br["log_prob"][i]),
                    int(br["rank"][i]),
                    "best",
                )
            )
        return last, best, best_steps


def _f(x: float) -> float:
    return float(x) if math.isfinite(x) else float("nan")
