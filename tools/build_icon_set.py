"""Build a real image set for quality measurements from Debian's icon themes (no download needed).

    apt-get install oxygen-icon-theme faenza-icon-theme gnome-colors
    python tools/build_icon_set.py --out icons            # icons/images/*.png, icons/ds32, icons/ds64

Each icon name of each theme is taken once, from its largest PNG of at least --min-size pixels,
composited on white, centred on a square canvas and resized to --size; exact duplicates (same pixels
at 32x32) are dropped. The images are then converted with pggan's own `dataset create` code at 32x32
and 64x64. Nobody drew these images for this purpose: they are a stand-in for a user's small,
colourful object set.
"""
import argparse
import os
import re
import sys

from image_sets import build, open_image

THEMES = ("oxygen", "Faenza", "gnome-colors-common", "gnome", "gnome-brave", "gnome-dust", "gnome-human",
          "gnome-illustrious", "gnome-noble", "gnome-wine", "gnome-wise")
SIZE_RE = re.compile(r"/(\d+)x\1/")


def candidates(root: str, min_size: int) -> dict:
    """{(theme, icon name): (size, path)} with the largest PNG of each icon name."""
    best: dict = {}
    for theme in THEMES:
        for d, _, files in os.walk(os.path.join(root, theme)):
            m = SIZE_RE.search(d + "/")
            if not m or int(m.group(1)) < min_size:
                continue
            size = int(m.group(1))
            for f in files:
                if f.endswith(".png"):
                    key = (theme, f[:-4])
                    if size > best.get(key, (0, ""))[0]:
                        best[key] = (size, os.path.join(d, f))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--icons", default="/usr/share/icons")
    ap.add_argument("--out", default="icons")
    ap.add_argument("--size", type=int, default=64, help="size of the stored images")
    ap.add_argument("--min-size", type=int, default=48, help="smallest source icon used")
    ap.add_argument("--no-datasets", action="store_true", help="only write the PNG folder")
    args = ap.parse_args()
    found = candidates(args.icons, args.min_size)
    if not found:
        print(f"no icons under {args.icons}: apt-get install oxygen-icon-theme faenza-icon-theme gnome-colors",
              file=sys.stderr)
        return 1
    named = ((f"{theme}-{name}", open_image(path)) for (theme, name), (_, path) in sorted(found.items()))
    kept = build(named, args.out, args.size, not args.no_datasets)
    print(f"{kept} icons of {len(found)} candidates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
