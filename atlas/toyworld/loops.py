"""Training helpers shared by the toy world's trainers: threads, batches, schedules, progress, losses."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from atlas.errors import AtlasError
from atlas.models.spaces import ImageSpace

P = ParamSpec("P")
R = TypeVar("R")


def own_rng(train: Callable[P, R]) -> Callable[P, R]:
    """A trainer seeds torch's global generator (``torch.manual_seed``) for its initial weights; this keeps
    the caller's generator as it was (``torch.random.fork_rng``), so bootstrapping a world changes no one
    else's random draws. What the trainer computes is unchanged."""

    @functools.wraps(train)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch.random.fork_rng(devices=[]):
            return train(*args, **kwargs)

    return wrapped


def target_space(size: int) -> ImageSpace:
    """T's input space: RGB [0,1], normalized by a fixed mean/std close to the world's pixel statistics."""
    return ImageSpace(size=size, mean=(0.45, 0.45, 0.45), std=(0.25, 0.25, 0.25))


def judge_space(size: int) -> ImageSpace:
    """J's input space: RGB mapped to [-1, 1] (a different preprocessing from T's, on purpose)."""
    return ImageSpace(size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def reader_space(size: int) -> ImageSpace:
    """The attribute reader's input space: RGB centred at 0.5, scaled by 1/0.3 (its own preprocessing)."""
    return ImageSpace(size=size, mean=(0.5, 0.5, 0.5), std=(0.3, 0.3, 0.3))


def generator_space(size: int) -> ImageSpace:
    """G's output space: RGB in [0, 1] from a sigmoid, so ``space.decode`` is the identity."""
    return ImageSpace(size=size)


TRAIN_THREADS_ENV = "ATLAS_TRAIN_THREADS"  # threads for training (default 2; 1 on cores other work shares)


def train_threads(default: int = 2) -> int:
    """``ATLAS_TRAIN_THREADS`` when set (a positive integer), else ``default``. On cores that other processes
    keep busy, one thread trains several times faster than two (each step waits for the slowest thread)."""
    text = os.environ.get(TRAIN_THREADS_ENV, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise AtlasError(f"{TRAIN_THREADS_ENV}={text!r}: give a positive number of threads, e.g. 1 or 2")
    return int(text)


@contextlib.contextmanager
def threads(n: int | None = None) -> Iterator[None]:
    """Train with ``n`` threads (default: ``train_threads()``), restoring torch's setting afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(n if n is not None else train_threads())
    try:
        yield
    finally:
        torch.set_num_threads(old)


def epoch_batches(n: int, batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches covering ``n`` items (the last short batch is dropped; BN needs > 1)."""
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]


def cosine_lr(base: float, step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One update at learning rate ``lr``: set it, clear gradients, backpropagate ``loss``, step."""
    set_lr(opt, lr)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, mininterval=1.0, dynamic_ncols=True)


def edge_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences of two (B, 3, H, W) images."""
    dxa, dxb = a[..., :, 1:] - a[..., :, :-1], b[..., :, 1:] - b[..., :, :-1]
    dya, dyb = a[..., 1:, :] - a[..., :-1, :], b[..., 1:, :] - b[..., :-1, :]
    return F.l1_loss(dxa, dxb) + F.l1_loss(dya, dyb)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of (B, 3, H, W) by its own sigma (B,) (sigma 0 = unchanged), separable 5-tap kernel."""
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    s = sigma.clamp(min=1e-3)[:, None]
    k = torch.exp(-(taps[None] ** 2) / (2 * s**2))
    k = k / k.sum(1, keepdim=True)  # (B, 5)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    kk = k.repeat_interleave(c, 0)  # (B*C, 5)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), kk[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kk[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


@torch.no_grad()
def predict(module: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Eval-mode outputs of ``module`` on (N, ...) inputs, batched; restores the module's mode."""
    was_training = module.training
    module.eval()
    out = torch.cat([module(x[i : i + batch]) for i in range(0, len(x), batch)])
    module.train(was_training)
    return out


def state_fingerprint(module: nn.Module) -> str:
    """sha256 (16 hex digits) over a module's state dict (names, shapes and bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
