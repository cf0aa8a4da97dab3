"""tools/image_sets.py: what the real-set builders (icons, emoji) do to every image."""
import importlib.util
import pathlib

import numpy as np
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "image_sets", pathlib.Path(__file__).resolve().parents[1] / "tools" / "image_sets.py")
image_sets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(image_sets)


def test_on_white_composites_transparency_and_centres_a_wide_image():
    im = Image.new("RGBA", (8, 4))
    px = im.load()
    for x in range(8):
        for y in range(4):
            px[x, y] = (0, 0, 255, 255) if x < 4 else (255, 0, 0, 0)   # left half opaque blue, right half clear
    out = image_sets.on_white(im, 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[:2] >= 250).all() and (out[6:] >= 250).all()     # padded above and below with white
    assert (out[3:5, 5:] >= 250).all()                             # the transparent half is white, not red
    assert (out[3:5, :3, 2] >= 250).all() and (out[3:5, :3, :2] <= 5).all()     # the opaque half stays blue


def test_write_images_skips_unreadable_blank_and_duplicate_images(tmp_path):
    red = Image.new("RGB", (16, 16), (200, 0, 0))
    blank = Image.new("RGBA", (16, 16), (0, 0, 0, 0))            # all transparent: white on white
    green = Image.new("RGB", (16, 16), (0, 200, 0))
    kept = image_sets.write_images([("a", red), ("b", None), ("c", blank), ("d", red.copy()), ("e", green)],
                                   str(tmp_path), 32)
    assert kept == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "e.png"]
    assert np.asarray(Image.open(tmp_path / "e.png")).shape == (32, 32, 3)
