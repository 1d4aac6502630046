"""The local S3 server the tests use (atlas.bench.local_s3: moto on 127.0.0.1)."""

from atlas.bench.local_s3 import ENV_KEYS, S3Server, s3_server

__all__ = ["ENV_KEYS", "S3Server", "s3_server"]
