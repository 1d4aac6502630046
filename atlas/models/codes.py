"""Statistics of a generator's code space (DGN-AM's clipping bounds, start codes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from atlas.atomic import atomic_write
from atlas.errors import ModelError


@dataclass
class CodeStats:
    """Per-dimension statistics of real codes h = E(x) (e.g. post-ReLU fc6 of real images).

    DGN-AM clips every code element to ``[lower_i, upper_i]`` with ``upper_i`` = mean + 3 std of that
    element over real images (Nguyen et al. 2016, released act_max.py); ``lower`` is 0 for post-ReLU codes.
    """

    mean: torch.Tensor  # (D,) or code shape
    std: torch.Tensor  # (D,)
    lower: torch.Tensor  # (D,)
    upper: torch.Tensor  # (D,)
    percentiles: dict[str, torch.Tensor]  # e.g. {"p50": (D,), "p99": (D,)}
    source: str = ""  # what the statistics were computed from
    read_from: tuple[str, str] | None = None  # (network spec, layer) the codes were read from, when known

    @staticmethod
    def from_codes(
        codes: torch.Tensor, source: str, sigmas: float = 3.0, read_from: tuple[str, str] | None = None
    ) -> CodeStats:
        """codes: (N, *code_shape) real codes -> statistics with the mean + ``sigmas`` * std upper bound."""
        c = codes.detach().float().flatten(1)  # (N, D)
        mean, std = c.mean(0), c.std(0)
        lower = torch.clamp(c.min(0).values, max=0.0) if (c < 0).any() else torch.zeros_like(mean)
        upper = torch.maximum(mean + sigmas * std, torch.full_like(mean, 1e-3))
        qs = torch.quantile(c[: min(len(c), 20000)], torch.tensor([0.5, 0.9, 0.99]), dim=0)
        shape = codes.shape[1:]
        pct = {"p50": qs[0].view(shape), "p90": qs[1].view(shape), "p99": qs[2].view(shape)}
        bounds = (mean.view(shape), std.view(shape), lower.view(shape), upper.view(shape))
        return CodeStats(*bounds, pct, source, read_from)

    def to(self, device: torch.device | str) -> CodeStats:
        return CodeStats(
            self.mean.to(device),
            self.std.to(device),
            self.lower.to(device),
            self.upper.to(device),
            {k: v.to(device) for k, v in self.percentiles.items()},
            self.source,
            self.read_from,
        )

    def save(self, path: str | Path) -> None:
        payload = {
            "mean": self.mean,
            "std": self.std,
            "lower": self.lower,
            "upper": self.upper,
            **{f"pct_{k}": v for k, v in self.percentiles.items()},
        }
        blob = {"tensors": payload, "source": self.source, "read_from": list(self.read_from or ())}
        atomic_write(path, lambda tmp: torch.save(blob, tmp))

    @staticmethod
    def load(path: str | Path, storage: Mapping[str, Any] | None = None) -> CodeStats:
        """Read a file written by :meth:`save`; ``path`` may be a URI (s3://, gs://, file://), opened with
        the ``storage:`` options."""
        return CodeStats.read(path, storage)[0]

    @staticmethod
    def read(path: str | Path, storage: Mapping[str, Any] | None = None) -> tuple[CodeStats, str]:
        """(:meth:`load`'s statistics, the file's fingerprint), from one read of its bytes: the fingerprint a
        resume compares is that of the statistics the run used."""
        import io

        from atlas.models.weights import is_uri, read_uri, source_fingerprint

        p = Path(path).expanduser()
        if is_uri(path):
            source: Path | io.BytesIO = io.BytesIO(read_uri(str(path), "code statistics file", storage))
        elif p.is_dir():
            raise ModelError(
                f"code statistics path {str(p)!r} is a folder; give the file `atlas code-stats` wrote (.pt)"
            )
        elif not p.is_file():
            raise ModelError(f"code statistics file {str(p)!r} not found; create it with `atlas code-stats`")
        else:
            source = io.BytesIO(p.read_bytes())  # one read: the statistics and their fingerprint
        fingerprint = source_fingerprint(source)
        try:
            blob = torch.load(source, map_location="cpu", weights_only=True)
            t = blob["tensors"]
            pct = {k[4:]: v for k, v in t.items() if k.startswith("pct_")}
            read_from = tuple(str(x) for x in blob.get("read_from") or ())  # older files: not recorded
            stats = CodeStats(
                t["mean"],
                t["std"],
                t["lower"],
                t["upper"],
                pct,
                str(blob.get("source", "")),
                read_from if len(read_from) == 2 else None,  # type: ignore[arg-type]
            )
        except Exception as exc:  # noqa: BLE001 - any failure means the file is not usable
            raise ModelError(
                f"code statistics file {str(p)!r} is unreadable ({type(exc).__name__}): it is not a file "
                "`atlas code-stats` wrote (tensors mean, std, lower, upper); create one with it"
            ) from None
        problem = stats.problem()
        if problem:
            raise ModelError(
                f"code statistics file {str(p)!r} {problem}; recompute it with `atlas code-stats`"
            )
        return stats, fingerprint

    def problem(self) -> str | None:
        """Why these statistics cannot bound and start code chains (None: they can)."""
        named = {"mean": self.mean, "std": self.std, "lower": self.lower, "upper": self.upper}
        for name, t in named.items():
            if not isinstance(t, torch.Tensor):
                return f"has a {name!r} that is not a tensor ({type(t).__name__})"
            if t.shape != self.mean.shape:
                return f"has a {name!r} of shape {tuple(t.shape)}, not the mean's {tuple(self.mean.shape)}"
            if not bool(torch.isfinite(t.float()).all()):
                return f"holds non-finite values (nan or inf) in {name!r}"
        if bool((self.std < 0).any()):
            return "holds a negative 'std'"
        if bool((self.upper < self.lower).any()):
            return "has an 'upper' bound below its 'lower' bound"
        return None


def default_deepsim_stats(code_shape: tuple[int, ...], signed: bool) -> CodeStats:
    """Documented fallback when no real images are at hand: PPGN's released clip range [0, 30] for
    post-ReLU codes ([-30, 30] for signed fc8 codes), zero mean, unit std. DGN-AM's per-dimension
    mean + 3 std bounds need real codes: compute them with ``atlas code-stats``."""
    zeros = torch.zeros(code_shape)
    lower = torch.full(code_shape, -30.0) if signed else zeros.clone()
    upper = torch.full(code_shape, 30.0)
    return CodeStats(
        zeros,
        torch.ones(code_shape),
        lower,
        upper,
        {},
        source="default: PPGN clip range, no data (run `atlas code-stats` for 3-sigma bounds)",
    )


def codes_of_images(probe_layer_fn, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Codes of real images: ``probe_layer_fn(rgb01 batch) -> (B, *code_shape)`` over ``images``
    (N, 3, H, W) rgb01, in batches, without gradients. Returns (N, *code_shape) on the CPU."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            out.append(probe_layer_fn(images[start : start + batch]).float().cpu())
    return torch.cat(out)
