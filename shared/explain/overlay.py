"""Heatmap overlays: colormap + alpha over the image, with a caption bar underneath."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from headstart.shared.data.images import encode_png

DEFAULT_CMAP = "jet"


def colorize(heatmap: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours."""
    from matplotlib import colormaps

    try:
        mapper = colormaps[cmap]
    except KeyError:
        from headstart.shared.runtime.errors import UserError

        raise UserError(f"`colormap` must be a matplotlib colormap name such as 'jet' or "
                        f"'inferno'. Received: colormap={cmap!r}") from None
    rgba = mapper(np.clip(heatmap, 0.0, 1.0))
    return (rgba[..., :3] * 255).astype(np.uint8)


def blend(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
          cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The image with the coloured heatmap (resized to the image) blended in at ``alpha``."""
    h, w = image.shape[:2]
    if heatmap.shape != (h, w):
        resized = Image.fromarray((np.clip(heatmap, 0, 1) * 255).astype(np.uint8))
        heatmap = np.asarray(resized.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255.0
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colorize(heatmap, cmap).astype(np.float32)
    return np.clip(mixed, 0, 255).astype(np.uint8)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """The image with a white bar of text below it (wrapped to the width)."""
    font = ImageFont.load_default()
    h, w = image.shape[:2]
    chars = max(8, w // 7)
    lines = [text[i:i + chars] for i in range(0, len(text), chars)][:3] or [""]
    bar = 4 + 13 * len(lines)
    canvas = Image.new("RGB", (w, h + bar), "white")
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((3, h + 2 + 13 * i), line, fill=(20, 20, 20), font=font)
    return np.asarray(canvas)


def overlay_png(image: np.ndarray, heatmap: np.ndarray, text: str, alpha: float = 0.45,
                cmap: str = DEFAULT_CMAP) -> bytes:
    """One overlay PNG: blended heatmap plus a caption (prediction, probability)."""
    return encode_png(caption(blend(image, heatmap, alpha, cmap), text))
