"""Seed a local S3-compatible endpoint (the compose file's moto server) for laptop runs.

``python -m headstart.infra.local_s3 BUCKET [LOCAL_DIR S3_URI]`` creates the bucket (idempotent) and
optionally uploads a local folder, through :mod:`headstart.shared.storage.store` so ``HEADSTART_S3_ENDPOINT``
applies exactly as it does for the jobs.
"""
from __future__ import annotations

import logging
import sys

from headstart.shared.runtime.errors import UserError

log = logging.getLogger("headstart.local_s3")


def ensure_bucket(bucket: str) -> None:
    """Create ``bucket`` unless it exists."""
    from headstart.shared.storage.s3 import s3_client

    client = s3_client()
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)
        log.info("created bucket %s", bucket)


def upload_folder(local_dir: str, uri: str) -> int:
    """Copy every file under ``local_dir`` to ``uri``; return how many."""
    from headstart.shared.storage.store import open_store

    src, dest = open_store(local_dir), open_store(uri)
    root = src.local_path()
    if root is None or not root.is_dir():
        raise UserError(f"expected a local folder to upload. Received: {local_dir!r}")
    count = 0
    for key in src.list():
        dest.upload_file(key, root / key)
        count += 1
    log.info("uploaded %d files from %s to %s", count, local_dir, uri)
    return count


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 2 with one line on bad arguments."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 3):
        print("usage: python -m headstart.infra.local_s3 BUCKET [LOCAL_DIR S3_URI]", file=sys.stderr)
        return 2
    try:
        ensure_bucket(args[0])
        if len(args) == 3:
            upload_folder(args[1], args[2])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
