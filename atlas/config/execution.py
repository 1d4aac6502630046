"""Where and how a run computes and what it stores: the ``compute``, ``ray``, ``store``, ``storage`` and
``toyworld`` sections.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from atlas.config.section import Float, Section

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class ComputeConfig(Section):
    device: str = Field(
        "auto",
        description="auto (cuda if present, else cpu), cpu, cuda, or cuda:N.",
        json_schema_extra={"type_doc": "auto | cpu | cuda | cuda:N"},
    )
    batch_size: int = Field(
        64,
        description="Chains per forward/backward pass (CPU 32-128; GPU: autotune with 0); the passes over "
        "real images take at most as many (and at most 256).",
        ge=0,
        le=65536,
    )
    autocast: Literal["auto", "none", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision; auto = bf16 on CUDA and CPUs with native bf16 (AVX512-BF16, AMX); "
        "fp16: CUDA only.",
    )
    channels_last: Literal["auto", True, False] = Field(
        "auto",
        description="channels_last memory format; auto = on for CPUs (oneDNN, bf16 and float32 alike: faster "
        "where measured), off on CUDA (contiguous with cuDNN's autotuner ran 1.2-1.5x faster on an H200).",
        json_schema_extra={"type_doc": "auto | true | false"},
    )
    cudnn_benchmark: bool = Field(
        True,
        description="CUDA: cuDNN times its kernels for each batch shape at its first pass (a chain's shapes "
        "stay fixed), within the engine's work only.",
    )
    compile: bool = Field(False, description="torch.compile the step (CUDA; measure first).")
    fold_batchnorm: bool = Field(
        True, description="Fold frozen BatchNorm into the conv/linear before it (same outputs, fewer passes)."
    )
    threads: int | None = Field(
        None,
        description="torch intra-op threads per worker (default: CPUs given to the worker).",
        ge=1,
        le=1024,
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"invalid device {value!r}; valid: auto, cpu, cuda, cuda:N")
        return value

    @field_validator("channels_last", mode="before")
    @classmethod
    def _no_number(cls, value: Any) -> Any:
        """A Literal's True matches 1 (1 == True): refused here, as the boolean keys refuse it."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"invalid value {value!r}; valid: 'auto', true, false")
        return value

    @model_validator(mode="after")
    def _check(self) -> ComputeConfig:
        if self.autocast == "fp16" and self.device == "cpu":
            raise ValueError(
                "autocast: fp16 needs a CUDA device and compute.device is 'cpu'; use bf16 or auto"
            )
        return self


class RayConfig(Section):
    address: str | None = Field(None, description="Ray address; null: RAY_ADDRESS or a new local instance.")
    num_workers: int | None = Field(
        None,
        description="AtlasWorker actors; default: as many as the cluster's GPUs (with gpus_per_worker) or "
        "CPUs / cpus_per_worker allow, at most one per shard.",
        ge=1,
        le=100_000,
    )
    cpus_per_worker: Float = Field(1.0, description="CPUs reserved per actor.", gt=0, le=1024)
    gpus_per_worker: Float | None = Field(
        None, description="GPUs per actor; default 1 where the cluster has GPUs.", ge=0, le=64
    )
    memory_per_worker_gb: Float | None = Field(
        None,
        description="Host memory reserved per actor (GB): Ray places no more actors on a node than its "
        "memory holds. Default: estimated from the run's models (1 GB + 4 x the bytes of their weights and "
        "the real images; AlexNet + DeePSiM fc6 + CaffeNet: 3.9 GB, measured 3.2-4.2 GB on CPU).",
        gt=0,
        le=100_000,
    )
    max_restarts: int = Field(
        3, description="Times a dead actor is restarted (actor deaths, not lost tasks).", ge=0
    )
    max_shard_retries: int = Field(
        3, description="Times one shard is re-queued after its actor died under it.", ge=0
    )
    units_per_shard: int = Field(16, description="Units per shard (the resume granularity).", ge=1)
    autoscaling: bool = Field(
        False,
        description="The cluster adds nodes on demand (cluster.yaml): actor requests no current node can "
        "host wait instead of being refused. Set num_workers and gpus_per_worker with it.",
    )
    start_timeout_s: Float = Field(
        900.0,
        description="Give up when no actor is alive or could be (re)started for this long (models load in "
        "minutes on a busy node; autoscaled nodes take longer).",
        gt=0,
    )
    stall_timeout_s: Float = Field(
        0.0,
        description="A live actor holding shards that answers nothing for this long (hung: a stuck device, a "
        "stopped process) is killed so Ray restarts it and its shards go to another; 0: ten times the "
        "slowest shard so far, at least 300 s (no limit before the first shard finishes).",
        ge=0,
    )


class StoreConfig(Section):
    keep_snapshots: bool = Field(True, description="Store PPGN snapshots as images.")
    activations_full_max: int = Field(
        1024,
        description="Store the whole layer's activations when it has at most this many units, else the "
        "top-k.",
        ge=1,
    )
    activations_top_k: int = Field(32, description="Top-k activations stored for wider layers.", ge=1)


class StorageConfig(Section):
    """Where the run lives when ``out_dir`` is a URI (pyarrow.fs; credentials the provider's usual way)."""

    shared: bool = Field(
        False,
        description="A plain local out_dir is a mount every Ray node shares (NFS); needed for a local path "
        "on a multi-node cluster.",
    )
    endpoint_override: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (MinIO); default: AWS_ENDPOINT_URL "
        "or AWS.",
    )
    region: str | None = Field(
        None, description="Object-store region; default: AWS_REGION / AWS_DEFAULT_REGION."
    )
    anonymous: bool = Field(False, description="Connect without credentials (public buckets).")

    @field_validator("endpoint_override")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        """An endpoint pyarrow can reach: ``http(s)://HOST[:PORT]`` or ``HOST[:PORT]`` (a trial's
        ``http://[::1`` passed the check and failed at the run's first write, the key unnamed)."""
        if value is None:
            return value
        text = value if "://" in value else f"http://{value}"
        try:
            parts = urlsplit(text)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/")
            ok = ok and (parts.port is None or parts.port > 0)
        except ValueError:  # an unclosed [IPv6 bracket, a port that is not a number
            ok = False
        if not ok:
            raise ValueError(
                f"{value!r} is not an endpoint URL; give http(s)://HOST:PORT, e.g. http://127.0.0.1:9000"
            )
        return value

    def object_store_options(self) -> dict[str, Any]:
        """The options an object-store URI opens with (``out_dir``, weights, code statistics)."""
        return self.model_dump(exclude={"shared"})


class ToyWorldRef(Section):
    preset: Literal["default", "micro", "pairs"] = Field(  # = presets.PRESETS (a test checks)
        "default", description="Toy-world preset used by toyworld: specs."
    )
    cache_dir: str | None = Field(
        None, description="Cache directory (default $ATLAS_CACHE or ~/.cache/atlas)."
    )
