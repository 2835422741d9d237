"""Small PNG thumbnails of pool images, as data URIs for hover labels and HTML grids."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

__all__ = ["thumbnail_uri", "thumbnail_grid_html"]


def thumbnail_uri(image: np.ndarray, *, size: int = 56) -> str:
    """A ``data:image/png;base64,...`` URI of one image (h, w[, c]) with values in [0, 1], upscaled to ``size``."""
    from PIL import Image

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (h, w) or (h, w, c), got shape {img.shape}.")
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    # Nearest keeps pixel edges crisp for 8x8 and 28x28 digits.
    pil = pil.resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnail_grid_html(
    images: np.ndarray,
    indices: Sequence[int],
    captions: Sequence[str] | None = None,
    *,
    size: int = 56,
    max_items: int = 200,
) -> str:
    """An HTML grid of thumbnails for ``indices`` (at most ``max_items``), each with a caption."""
    indices = list(indices)[:max_items]
    if not indices:
        return "<i>nothing selected</i>"
    captions = list(captions)[: len(indices)] if captions is not None else [str(i) for i in indices]
    cells = "".join(
        f'<figure style="margin:2px;text-align:center;font-size:10px">'
        f'<img src="{thumbnail_uri(images[i], size=size)}" width="{size}" height="{size}" '
        f'style="image-rendering:pixelated"/><figcaption>{c}</figcaption></figure>'
        for i, c in zip(indices, captions)
    )
    return f'<div style="display:flex;flex-wrap:wrap">{cells}</div>'
