"""What the real-set builders share (tools/build_icon_set.py, tools/build_emoji_set.py): every image
composited on white and centred on a square canvas, blank and duplicate images dropped, then converted
with pggan's own `dataset create` code at 32x32 and 64x64."""
import hashlib
import os

import numpy as np
from PIL import Image


def open_image(source) -> Image.Image | None:
    """A decoded image from a path or a file object; None when it cannot be read."""
    try:
        im = Image.open(source)
        im.load()
    except OSError:
        return None
    return im


def on_white(im: Image.Image, size: int) -> np.ndarray:
    """[size, size, 3] uint8: ``im`` composited on white, centred on a square canvas, Lanczos-resized."""
    im = im.convert("RGBA")
    side = max(im.width, im.height)
    canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    canvas.alpha_composite(im, ((side - im.width) // 2, (side - im.height) // 2))
    return np.asarray(canvas.convert("RGB").resize((size, size), Image.LANCZOS))


def write_images(named_images, folder: str, size: int) -> int:
    """Write ``(name, PIL image or None)`` pairs as ``folder/NAME.png`` on white; skip unreadable (None) and
    blank images and exact duplicates at 32x32. Returns how many were written."""
    os.makedirs(folder, exist_ok=True)
    seen, kept = set(), 0
    for name, im in named_images:
        img = None if im is None else on_white(im, size)
        if img is None or img.min() > 250:                 # unreadable, or blank on white
            continue
        digest = hashlib.sha256(np.asarray(Image.fromarray(img).resize((32, 32), Image.BOX)).tobytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        Image.fromarray(img).save(os.path.join(folder, f"{name}.png"))
        kept += 1
    return kept


def build(named_images, out: str, size: int, datasets: bool = True) -> int:
    """``out/images/*.png`` from ``(name, PIL image or None)`` pairs (:func:`write_images`), then, with
    ``datasets``, ``out/ds32`` and ``out/ds64``. Returns how many images were written."""
    folder = os.path.join(out, "images")
    kept = write_images(named_images, folder, size)
    print(f"wrote {kept} images to {folder}")
    if datasets:
        write_datasets(folder, out)
    return kept


def write_datasets(folder: str, out: str, resolutions=(32, 64)) -> None:
    from pggan.data.create import ConvertOptions, create_dataset
    from pggan.data.sources import open_source

    for res in resolutions:
        dest = os.path.join(out, f"ds{res}")
        create_dataset(open_source(folder), dest, ConvertOptions(resolution=res), overwrite=True, progress=False)
        print(f"wrote {dest}")
