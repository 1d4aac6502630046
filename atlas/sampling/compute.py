"""Device-side execution settings: mixed precision, memory format, compilation (ComputeConfig -> behaviour).

Usage::

    setup = ComputeSetup.resolve(compute_cfg, device)
    G = setup.prepare(generator.module)         # channels_last if set; torch.compile if asked (CUDA)
    with setup.autocast():                      # bf16 on CUDA and on CPUs where it is faster (auto)
        ...
    x = setup.to_input(x)                       # channels_last when compute.channels_last

``autocast: auto`` picks bf16 on CUDA and on CPUs whose bf16 arithmetic is measured to be clearly faster
than float32 (:func:`cpu_bf16_is_faster`: native bf16, and a bf16 matmul at least :data:`BF16_MIN_SPEEDUP` x
as fast); elsewhere float32. The flags alone do not tell: with AVX512-BF16 a 2-core AMD EPYC ran bf16
matmuls 4.4x as fast as float32, a 2-core Intel Xeon without AMX at half float32's speed (its demo atlas
193 s in bf16, 152 s in float32). The optimized state (code or pixels) and every update stay float32;
autocast only covers the forward pass (and its backward).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from atlas.config import ComputeConfig
from atlas.errors import ConfigError, error_line


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), so bf16 autocast pays off.

    Honours a capped instruction set: with ``ATEN_CPU_CAPABILITY=avx2`` (and ``ONEDNN_MAX_CPU_ISA=AVX2``)
    torch runs as on a CPU without AVX-512, and so does this answer (how no-bf16 numbers are reproduced)."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


BF16_MIN_SPEEDUP = 1.5  # bf16 / float32 matmul speed auto asks for (measured: 4.4x or 0.5x, never near 1.5)
_PROBE_SIZE = 768  # a matmul of 0.9 GFLOP: a few ms in either precision
_PROBE_ROUNDS = 8


@functools.cache  # a fact of this machine's CPU, measured once per process
def cpu_bf16_is_faster() -> bool:
    """True when this CPU has native bf16 (:func:`cpu_has_native_bf16`) and a bf16 matmul runs at least
    :data:`BF16_MIN_SPEEDUP` x as fast as a float32 one (on one thread, best of :data:`_PROBE_ROUNDS`
    interleaved rounds each, so other work on the cores slows both alike; ~0.2 s)."""
    if not cpu_has_native_bf16():
        return False
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core's arithmetic: another process on the machine's cores slows it less
    try:
        return _bf16_speedup() >= BF16_MIN_SPEEDUP
    finally:
        torch.set_num_threads(threads)


def _bf16_speedup() -> float:
    """float32 / bf16 time of a :data:`_PROBE_SIZE` square matmul, the best of :data:`_PROBE_ROUNDS`
    interleaved rounds each."""
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    gen = torch.Generator().manual_seed(0)  # its own: the global generator's state stays the caller's
    mats = {dt: (torch.randn(_PROBE_SIZE, _PROBE_SIZE, generator=gen).to(dt),) * 2 for dt in best}
    with torch.no_grad():
        for dt in best:
            torch.mm(*mats[dt])  # warm-up: oneDNN picks and caches its kernel
        for _ in range(_PROBE_ROUNDS):
            for dt in best:
                start = time.perf_counter()
                torch.mm(*mats[dt])
                best[dt] = min(best[dt], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def cpu_kind() -> str:
    """This CPU's kind, as far as precision goes: its model name, the instruction set torch runs and torch's
    version. A run records ``auto``'s answer per kind (``run.json``'s ``cpu_autocast``), so every CPU worker
    of one kind, in this call or a resume, computes in the same precision whatever the load when it starts:
    the measured answer (:func:`cpu_bf16_is_faster`) can flip on cores busy with other work."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        model = names[0] if names else model
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{model} | {torch.backends.cpu.get_cpu_capability()} | {bf16} | torch {torch.__version__}"


def cpu_autocast() -> str:
    """``compute.autocast: auto``'s answer on this CPU as a setting: 'bf16' or 'none' (float32)."""
    return "bf16" if cpu_bf16_is_faster() else "none"


def machine_cpu_autocast(record: Path | None) -> str:
    """:func:`cpu_autocast` for this CPU's kind as ``record`` (a JSON file: kind -> answer) keeps it:
    measured on the first run of a machine, then the same for every later run there (measured per run,
    two runs of one model minutes apart once computed in two precisions). ``record`` None, unreadable or
    not writable: measured now. Delete the file to measure again; ``compute.autocast`` pins a precision."""
    kind = cpu_kind()
    known: dict[str, str] = {}
    if record is not None:
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(record.read_text())
            known = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    if known.get(kind) in ("bf16", "none"):
        return known[kind]
    answer = cpu_autocast()
    if record is not None:
        with contextlib.suppress(OSError):
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**known, kind: answer}, indent=1))
            os.replace(tmp, record)
    return answer


def precision_name(dtype: torch.dtype | None) -> str:
    """``torch.bfloat16`` -> "bfloat16"; None (no autocast) -> "float32"."""
    return str(dtype or torch.float32).removeprefix("torch.")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU, or a name torch rejects, is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"compute.device: invalid device {name!r}; valid: auto, cpu, cuda, cuda:N"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"compute.device: {name!r} but no CUDA device is available; use auto or cpu")
    return dev


def channels_last_breaks(module: nn.Module, x: torch.Tensor) -> str | None:
    """``Type: message at file:LINE`` when ``module``'s forward fails on ``x`` (B, C, H, W) in the
    channels_last memory format but not in the default one, else None. The usual cause is a ``.view`` of a
    conv output (``x.view(x.size(0), -1)``), which needs contiguous memory (``.reshape`` / ``.flatten`` do
    not): a user's network failed in every worker with channels_last on (the CPU default). ``module`` is left
    in the default format."""
    if x.dim() != 4:
        return None
    try:
        with torch.no_grad():
            module.to(memory_format=torch.channels_last)
            try:
                module(x.contiguous(memory_format=torch.channels_last))
            finally:
                module.to(memory_format=torch.contiguous_format)
        return None
    except Exception as exc:  # noqa: BLE001 - user networks fail in many ways
        failed = error_line(exc)
    try:
        with torch.no_grad():
            module(x.contiguous())
    except Exception:  # noqa: BLE001 - it fails in either format: the pre-flight names that
        return None
    return failed


@contextlib.contextmanager
def _cudnn_benchmark() -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@dataclass(frozen=True)
class ComputeSetup:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = float32
    channels_last: bool
    compile: bool
    batch_size: int  # 0 = autotune (CUDA)
    cudnn_benchmark: bool = False  # CUDA: cuDNN's autotuner inside kernels()

    @staticmethod
    def resolve(cfg: ComputeConfig, device: torch.device) -> ComputeSetup:
        cuda = device.type == "cuda"
        fast_bf16 = cuda or (device.type == "cpu" and cfg.autocast == "auto" and cpu_bf16_is_faster())
        dtype = {
            "none": None,
            "bf16": torch.bfloat16,
            "fp16": torch.float16,
            "auto": torch.bfloat16 if fast_bf16 else None,
        }[cfg.autocast]
        if dtype is torch.float16 and not cuda:
            dtype = (
                None  # fp16 autocast needs gradient scaling to be safe; CPU workers of a GPU config: float32
            )
        # auto: channels_last helps oneDNN, bf16 and float32 alike (docs/sampling.md, "CPU precision"); on
        # CUDA contiguous tensors with cuDNN's autotuner were faster (README, "On a GPU").
        channels_last = cfg.channels_last if isinstance(cfg.channels_last, bool) else not cuda
        batch = cfg.batch_size if (cfg.batch_size > 0 or cuda) else 64
        return ComputeSetup(
            device, dtype, channels_last, cfg.compile and cuda, batch, cfg.cudnn_benchmark and cuda
        )

    @property
    def first_batch(self) -> int:
        """Chains in the first pass: ``batch_size``, or 512 when it is 0 (CUDA autotune: halved on OOM)."""
        return self.batch_size or 512

    @property
    def precision(self) -> str:
        """The precision the chains run in, as torch names it: "bfloat16", "float16" or "float32"."""
        return precision_name(self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def kernels(self) -> contextlib.AbstractContextManager:
        """cuDNN's autotuner on (``compute.cudnn_benchmark``, CUDA) for the work inside, then the process's
        own setting again."""
        return _cudnn_benchmark() if self.cudnn_benchmark else contextlib.nullcontext()

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the networks run in: channels_last (4-D) where set up, else contiguous
        (a permuted batch of real images broke a network's ``x.view``: a trial)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def prepare(self, module: nn.Module, compile_ok: bool = True) -> nn.Module:
        """Move to the device (channels_last where set up); torch.compile when configured and ``compile_ok``.

        Targets are not compiled: their layer probe stops the forward with an exception (a graph break).
        """
        module.to(self.device)
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        if self.compile and compile_ok:
            return torch.compile(module, dynamic=True)  # type: ignore[return-value]
        return module
