"""Build a second real image set from Debian's colour emoji font (no download needed).

    apt-get install fonts-noto-color-emoji && pip install fonttools
    python tools/build_emoji_set.py --out emoji          # emoji/images/*.png, emoji/ds32, emoji/ds64

Every colour bitmap of the font (faces, people, hands, animals, food, objects, flags, skin-tone
variants: about 3,900 PNGs of 136x128) is composited on white, centred on a square canvas and resized
to --size; exact duplicates at 32x32 and blank bitmaps are dropped (tools/image_sets.py). The images
are converted with pggan's own `dataset create` code at 32x32 and 64x64. Nobody drew these for this
purpose; next to the icon set (tools/build_icon_set.py: 1,599 images of many kinds of object) this is
a larger set whose images share one style: faces, people, flags and hands, as the issue's own
held-out set of small colourful objects.
"""
import argparse
import io
import os
import sys

from image_sets import build, open_image

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"


def bitmaps(font_path: str) -> dict:
    """{glyph name: PNG bytes} of the largest strike of the font's CBDT table."""
    from fontTools.ttLib import TTFont

    strikes = TTFont(font_path)["CBDT"].strikeData
    largest = max(strikes, key=lambda s: max((g.metrics.height for g in s.values()), default=0))
    return {name: glyph.imageData for name, glyph in largest.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--font", default=FONT)
    ap.add_argument("--out", default="emoji")
    ap.add_argument("--size", type=int, default=64, help="size of the stored images")
    ap.add_argument("--no-datasets", action="store_true", help="only write the PNG folder")
    args = ap.parse_args()
    if not os.path.isfile(args.font):
        print(f"no font at {args.font}: apt-get install fonts-noto-color-emoji", file=sys.stderr)
        return 1
    try:
        found = bitmaps(args.font)
    except ImportError:
        print("this tool reads the font with fontTools: pip install fonttools", file=sys.stderr)
        return 1
    except KeyError:
        print(f"{args.font} has no colour bitmaps (CBDT table): use Noto Color Emoji", file=sys.stderr)
        return 1
    named = ((name, open_image(io.BytesIO(png))) for name, png in sorted(found.items()))
    kept = build(named, args.out, args.size, not args.no_datasets)
    print(f"{kept} emoji of {len(found)} bitmaps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
