"""Checks that run before any image is decoded: each failure is one clear line, exit 2.

Decoding a dataset takes seconds to minutes; a missing weights file, the ``tiny`` backbone
with the default ImageNet weights, ImageNet weights on an offline machine, an output that
cannot be written or a dataset that cannot be read must not wait that long to be reported.
Workflows call :func:`check_output`, :func:`check_input` and :func:`check_backbone` first.
Imports of the storage and model layers are lazy: the CLI stays fast.
"""
from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

from headstart.shared.runtime.errors import UserError

log = logging.getLogger("headstart.preflight")

# Where keras.applications downloads ImageNet weights from (one connect tells online/offline).
WEIGHTS_HOST = ("storage.googleapis.com", 443)
CONNECT_TIMEOUT_S = 3.0
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_output(uri: str, flag: str = "--out") -> None:
    """``uri`` can be written: create it (locally) and write then delete a probe object."""
    from headstart.shared.storage.store import open_store

    try:
        store = open_store(uri)
        probe = f"_preflight-{uuid.uuid4().hex[:8]}"
        store.write_bytes(probe, b"")
        store.delete(probe)
    except UserError as exc:
        raise UserError(f"cannot write to {flag} {uri!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - permissions, bucket policy, a file in the way...
        raise UserError(f"cannot write to {flag} {uri!r}: {_reason(exc)}") from None


def check_input(uri: str, what: str) -> None:
    """``uri`` is reachable and holds at least one readable object."""
    from headstart.shared.storage.store import open_store

    try:
        store = open_store(uri)
        local = store.local_path()
        if local is not None and not local.exists():
            raise UserError(f"{what} {uri!r} does not exist")
        first = next(iter(store.list()), None)
        if first is None and (local is None or local.is_dir()):
            raise UserError(f"{what} {uri!r} is empty")
        if first is not None:
            store.read_bytes(first)[:1]
    except UserError as exc:
        raise UserError(str(exc) if uri in str(exc) else f"cannot read {what} {uri!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - credentials, network, permissions
        raise UserError(f"cannot read {what} {uri!r}: {_reason(exc)}") from None


def keras_cache_dir() -> Path:
    """Where keras.applications keeps downloaded weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def imagenet_cached(app: str) -> bool:
    """True when weights of the ``keras.applications`` ``app`` are in the Keras cache."""
    folder = keras_cache_dir()
    if not folder.is_dir():
        return False
    want = app.lower().replace("_", "")
    return any(want in p.name.lower().replace("_", "") for p in folder.glob("*.h5"))


def online(host: tuple[str, int] | None = None, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Can this machine open a TCP connection to the ImageNet weights host?"""
    host = host or WEIGHTS_HOST
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def check_backbone(name: str, weights: str, image_size: int, build: bool = True) -> None:
    """The backbone exists and its weights can be had: cached or reachable ImageNet weights,
    or a ``.weights.h5`` file that exists, is HDF5 and fits the backbone at ``image_size``.

    ``build=False``: leave the fit to the caller, which builds the backbone with these weights
    before its slow part anyway (one build and one weights load, not two)."""
    from headstart.shared.model.backbones import check_weights_arg, get_info

    info = get_info(name)
    weights = check_weights_arg(weights)
    if weights == "none":
        return
    if weights == "imagenet":
        if not info.pretrained:
            raise UserError(f"backbone {name!r} has no ImageNet weights (the default --weights): "
                            "pass --weights none to train it from scratch, or --weights PATH")
        if not imagenet_cached(info.app) and not online():
            raise UserError(f"ImageNet weights for {name!r} are not in {keras_cache_dir()} and "
                            f"{WEIGHTS_HOST[0]} cannot be reached (offline?): pass --weights PATH "
                            "to a backbone .weights.h5 file, or --weights none")
        return
    _check_weights_file(name, weights, image_size, build)


def _check_weights_file(name: str, uri: str, image_size: int, build: bool = True) -> None:
    from headstart.shared.storage.store import split_uri

    try:
        store, key = split_uri(uri)
        if not store.exists(key):
            raise UserError(f"weights file not found: {uri!r}")
        local = store.local_path()
        if local is not None:
            with open(local / key, "rb") as fh:
                head = fh.read(len(HDF5_SIGNATURE))
            if head != HDF5_SIGNATURE:
                raise UserError(f"weights file {uri!r} is not a Keras .weights.h5 (HDF5) file")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot read weights file {uri!r}: {_reason(exc)}") from None
    # The file exists: build the backbone without weights and load them, so a file for
    # another backbone or input size fails now (a few seconds), not after decoding.
    if not build:
        return
    from headstart.shared.model.backbones import build_backbone

    build_backbone(name, image_size, uri)
    log.info("preflight: weights %s fit %s at %dpx", uri, name, image_size)
