"""A real S3 API on 127.0.0.1 (moto's server mode): the store's object-store path in tests and in `atlas bench
throughput --ray --store local-s3`.

``s3_server()`` starts it, points the usual ``AWS_*`` variables at it (so pyarrow, the CLI, Ray workers
started afterwards and subprocesses all find it) and creates a bucket; ``stop()`` restores the
environment. Requests go to loopback only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from atlas.errors import AtlasError

ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
)


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    server: object
    saved_env: dict[str, str | None] = field(default_factory=dict)

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def objects(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` in the bucket."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(endpoint_override=self.endpoint)
        base = f"{self.bucket}/{prefix}".rstrip("/")
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def stop(self) -> None:
        self.server.stop()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_server(bucket: str = "atlas-test") -> S3Server:
    """Start the server, point ``AWS_*`` at it (saved, restored by ``stop()``) and create ``bucket``."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise AtlasError("a local S3 server needs moto: pip install 'moto[server]'") from None
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True).create_dir(bucket)
    return S3Server(endpoint, bucket, server, saved)
