"""Deterministic per-chain seeds and random streams.

Usage::

    s = chain_seed(run_seed=0, layer="fc8", unit=3, chain=1)   # stable 63-bit int (sha256-derived)
    gens = chain_generators([s, ...], device)                  # one torch.Generator per chain

Every random draw of a chain (start code, PPGN noise, jitter, resets) comes from that chain's own generator,
so a chain gives the same images whether it runs alone or inside any batch (same device); a re-run with
same config reproduces the same images.
"""

from __future__ import annotations

import hashlib

import torch


def chain_seed(run_seed: int, layer: str, unit: int, chain: int) -> int:
    """Seed of one chain from (run seed, layer, unit, chain); independent of batching and of Python's hash."""
    key = f"atlas-chain|{int(run_seed)}|{layer}|{int(unit)}|{int(chain)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def chain_generators(seeds: list[int], device: torch.device) -> list[torch.Generator]:
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        gens.append(g)
    return gens


def randn_per_chain(
    gens: list[torch.Generator], shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """(B, *shape) standard normal noise, row b drawn from chain b's generator."""
    return torch.stack([torch.randn(shape, generator=g, device=device) for g in gens])


def randint_per_chain(
    gens: list[torch.Generator], low: int, high: int, n: int, device: torch.device
) -> torch.Tensor:
    """(B, n) integers in [low, high), row b from chain b's generator."""
    return torch.stack([torch.randint(low, high, (n,), generator=g, device=device) for g in gens])
