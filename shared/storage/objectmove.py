"""Move an object inside one store without pulling it through memory where possible:
a rename on local disks, a server-side copy on S3, read + write elsewhere."""
from __future__ import annotations

import os

from headstart.shared.storage.store import LocalStore, S3Store, Store, join


def move_object(store: Store, src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (both keys of ``store``); ``dst`` is replaced atomically."""
    if isinstance(store, LocalStore):
        target = store.root / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(store.root / src, target)
        return
    if isinstance(store, S3Store):
        def full(key: str) -> str:
            return join(store.prefix, key) if store.prefix else key
        store.client.copy_object(Bucket=store.bucket, Key=full(dst),
                                 CopySource={"Bucket": store.bucket, "Key": full(src)})
    else:
        store.write_bytes(dst, store.read_bytes(src))
    store.delete(src)
