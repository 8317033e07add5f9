"""Download the ImageNet weights of some backbones into the Keras cache (``$KERAS_HOME``).

Run at image build time (``docker build --build-arg BAKE_WEIGHTS="resnet50 ..."``) so jobs do
not download at run time: ``python -m headstart.infra.bake_weights resnet50 mobilenet_v2``.
"""
from __future__ import annotations

import logging
import os
import sys

from headstart.shared.runtime.errors import UserError

log = logging.getLogger("headstart.bake_weights")


def bake(names: list[str]) -> list[str]:
    """Build each named backbone once with ImageNet weights, filling the Keras cache."""
    from headstart.shared.model.backbones import REGISTRY, build_backbone, get_info

    baked = []
    for name in names:
        info = get_info(name)  # UserError naming the valid backbones
        if not info.pretrained:
            raise UserError(f"backbone {name!r} has no ImageNet weights to bake; "
                            f"choose from {sorted(n for n, b in REGISTRY.items() if b.pretrained)}")
        build_backbone(name, info.default_size, "imagenet")
        log.info("baked ImageNet weights of %s into %s", name,
                 os.environ.get("KERAS_HOME", "~/.keras"))
        baked.append(name)
    return baked


def main(argv: list[str] | None = None) -> int:
    """Entry point: backbone names as arguments; exit 2 on a bad name."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = list(sys.argv[1:] if argv is None else argv)
    try:
        bake(names)
    except UserError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
