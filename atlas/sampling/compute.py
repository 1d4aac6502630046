"""Device-side execution settings: mixed precision, memory format, compilation (ComputeConfig -> behaviour).

Usage::

    setup = ComputeSetup.resolve(compute_cfg, device)
    G = setup.prepare(generator.module)         # channels_last on CUDA; torch.compile when asked
    with setup.autocast():                      # bf16 on CUDA (auto), no-op on CPU
        ...
    x = setup.to_input(x)                       # channels_last on CUDA

On CPU everything is float32 and contiguous (bf16 autocast on 2 CPU cores is slower and changes numerics).
The optimized state (code or pixels) and every update stay float32; autocast only covers the forward pass.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from atlas.config import ComputeConfig
from atlas.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"compute.device: {name!r} but no CUDA device is available; use auto or cpu")
    return dev


@dataclass(frozen=True)
class ComputeSetup:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = float32
    channels_last: bool
    compile: bool
    batch_size: int  # 0 = autotune (CUDA)

    @staticmethod
    def resolve(cfg: ComputeConfig, device: torch.device) -> ComputeSetup:
        cuda = device.type == "cuda"
        dtype = {
            "none": None,
            "bf16": torch.bfloat16,
            "fp16": torch.float16,
            "auto": torch.bfloat16 if cuda else None,
        }[cfg.autocast]
        if dtype is not None and not cuda:
            dtype = None  # CPU: float32 (documented above)
        batch = cfg.batch_size if (cfg.batch_size > 0 or cuda) else 64
        return ComputeSetup(device, dtype, cfg.channels_last and cuda, cfg.compile and cuda, batch)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, module: nn.Module, compile_ok: bool = True) -> nn.Module:
        """Move to the device (channels_last on CUDA); torch.compile when configured and ``compile_ok``.

        Targets are not compiled: their layer probe stops the forward with an exception (a graph break).
        """
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile and compile_ok:
            return torch.compile(module, dynamic=True)  # type: ignore[return-value]
        return module
