"""``pggan dataset create``: any supported source -> the multi-resolution dataset format.

Items are decoded and resampled in worker processes, a bounded window at a time, and appended to the
level files; memory stays below ``max_memory_mb`` whatever the image count (see ``window_size``).
Unusable files are skipped and listed with their reason in the dataset's report.txt.
"""
from __future__ import annotations

import io
import os
import random
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..util.checks import is_resolution
from ..util.proc import exit_with_parent
from .base import DataError
from .dataset import DatasetWriter
from .sources import Source


class BadImage(Exception):
    """One input cannot be used; the message is the reason written to the report."""


@dataclass
class ConvertOptions:
    resolution: int
    channels: int = 3
    square: str = "crop"            # crop (centre) or pad
    small: str = "skip"             # skip or upscale images smaller than the resolution
    background: tuple = (255, 255, 255)   # for transparency and padding
    max_count: int | None = None
    shuffle_seed: int | None = None
    max_bad_fraction: float = 0.5
    workers: int = 0                # 0 = all cores
    max_memory_mb: int = 1024
    max_pixels: int = 1 << 28       # decoded size above which a file is treated as a decompression bomb
    compress_from: int = 0          # store levels of this resolution and above as PNG (0 = none)

    def validate(self) -> "ConvertOptions":
        r = self.resolution
        if not is_resolution(r):
            raise DataError(f"--resolution must be a power of two from 4 to 1024, got {r}")
        if self.compress_from and not is_resolution(self.compress_from, high=r):
            raise DataError(f"--compress-from must be a power of two from 4 to --resolution ({r}), or 0")
        if self.channels not in (1, 3):
            raise DataError(f"--channels must be 1 or 3, got {self.channels}")
        if self.square not in ("crop", "pad") or self.small not in ("skip", "upscale"):
            raise DataError("--square must be crop or pad; --small must be skip or upscale")
        if not 0 <= self.max_bad_fraction <= 1:
            raise DataError("--max-bad-fraction must be between 0 and 1")
        if self.max_memory_mb < 16:
            raise DataError("--max-memory-mb must be at least 16")
        return self


def window_size(opts: ConvertOptions) -> int:
    """Items in flight at once: each holds at most its full-resolution pixels twice (worker result and
    the levels being written, ~4/3 of it) plus its encoded bytes; we budget 4x the raw image."""
    per_item = 4 * opts.channels * opts.resolution ** 2
    return int(max(1, min(4096, opts.max_memory_mb * 2 ** 20 // per_item)))


# ---- one image ---------------------------------------------------------------------------

def _decode(data: bytes, opts: ConvertOptions):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage("empty file")
    Image.MAX_IMAGE_PIXELS = opts.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > opts.max_pixels:
                raise BadImage(f"decompression bomb: {im.width}x{im.height} pixels is over the limit of {opts.max_pixels}")
            im.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise BadImage("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"truncated or corrupt image: {e}") from None
    return im


def _to_mode(im, channels: int, background: tuple):
    """Any PIL mode -> 'L' or 'RGB': 16-bit scaled down, transparency composited on the background."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        a = a >> 8 if a.max() > 255 else a
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":
        im = Image.fromarray(np.clip(np.asarray(im), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def _square(im, how: str, background: tuple):
    from PIL import Image

    w, h = im.size
    if w == h:
        return im
    if how == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return im.crop((left, top, left + s, top + s))
    s = max(w, h)
    fill = background[0] if im.mode == "L" else tuple(background)
    out = Image.new(im.mode, (s, s), fill)
    out.paste(im, ((s - w) // 2, (s - h) // 2))
    return out


def _oriented_crop(im, quad: np.ndarray, resolution: int):
    """Appendix C: mirror-pad (blurred) so the rectangle fits, bilinear to 4R, box-filter to R."""
    from PIL import Image, ImageFilter

    w, h = im.size
    lo, hi = quad.min(axis=0), quad.max(axis=0)
    pad = int(np.ceil(max(0, -lo[0], -lo[1], hi[0] - w, hi[1] - h))) + 1
    if pad > 1:
        a = np.asarray(im)
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if a.ndim == 3 else ())
        padded = Image.fromarray(np.pad(a, widths, mode="reflect" if pad < min(w, h) else "edge"))
        blurred = padded.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.02 * pad)))
        mask = Image.new("L", padded.size, 0)
        mask.paste(255, (pad, pad, pad + w, pad + h))
        im = Image.composite(padded, blurred, mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.1 * pad))))
        quad = quad + pad
    big = im.transform((4 * resolution, 4 * resolution), Image.QUAD, tuple(quad.flatten()), Image.BILINEAR)
    return big.reduce(4)


def prepare(payload, opts: ConvertOptions) -> np.ndarray:
    """One source item -> uint8 [C, R, R]; raises BadImage with the reason."""
    from PIL import Image, ImageOps

    r = opts.resolution
    if isinstance(payload, dict) and "pixels" in payload:         # rendered by the source, final
        if payload["pixels"].shape != (opts.channels, r, r):
            raise BadImage(f"rendered as {payload['pixels'].shape}, expected {(opts.channels, r, r)}")
        return payload["pixels"]
    if isinstance(payload, np.ndarray):
        im = Image.fromarray(payload[..., 0] if payload.shape[-1] == 1 else payload)
        im = _to_mode(im, opts.channels, opts.background)
        quad = crop = None
    else:
        data = payload["bytes"] if isinstance(payload, dict) else payload
        quad = payload.get("quad") if isinstance(payload, dict) else None
        crop = payload.get("crop") if isinstance(payload, dict) else None
        im = _decode(data, opts)
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - a broken EXIF block leaves the image as stored
            pass
        im = _to_mode(im, opts.channels, opts.background)
    if quad is not None:
        im = _oriented_crop(im, np.asarray(quad, dtype=np.float64), r)
    else:
        if crop is not None:
            if im.width < crop[2] or im.height < crop[3]:
                raise BadImage(f"{im.width}x{im.height} is smaller than the crop box {crop}")
            im = im.crop(crop)
        im = _square(im, opts.square, opts.background)
        if im.width < r and opts.small == "skip":
            raise BadImage(f"too small: {im.width}x{im.height} < {r}x{r} (use --small upscale to keep it)")
        if im.width != r:
            im = im.resize((r, r), Image.LANCZOS)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _prepare_safe(args):
    key, payload, opts = args
    try:
        return key, prepare(payload, opts), None
    except BadImage as e:
        return key, None, str(e)
    except Exception as e:  # noqa: BLE001 - an unexpected decoder failure skips the file, never the run
        return key, None, f"unreadable: {type(e).__name__}: {e}"


def _worker_init(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle: no worker tracebacks
    exit_with_parent(parent_pid)                      # a killed conversion leaves no worker behind


# ---- the whole conversion ----------------------------------------------------------------

def select_keys(source: Source, opts: ConvertOptions) -> list:
    keys = source.keys()
    if opts.shuffle_seed is not None:
        random.Random(opts.shuffle_seed).shuffle(keys)
    if opts.max_count is not None:
        keys = keys[: opts.max_count]
    return keys


def create_dataset(source: Source, dest: str, opts: ConvertOptions, overwrite: bool = False,
                   progress: bool | None = None, stats: dict | None = None, echo=None) -> dict:
    """Convert ``source`` into a dataset at ``dest``; returns the header. ``progress``: a bar on stderr
    (None: only where stderr is a terminal, so that a redirected log has no carriage returns); ``stats`` receives counters;
    ``echo`` (a print function) hears of partial folders of ``dest`` left by a killed conversion and removed."""
    opts.validate()
    keys = select_keys(source, opts)
    report = list(getattr(source, "ignored", lambda: [])())
    if not keys:
        raise DataError(f"no images found in {source.describe()}" + (f" ({len(report)} other files)" if report else ""))
    wanted = set(keys)
    window = window_size(opts)
    workers = opts.workers or os.cpu_count() or 1
    writer = DatasetWriter(dest, opts.resolution, opts.channels, overwrite, opts.compress_from)
    stats = stats if stats is not None else {}
    stats.update(window=window, max_in_flight=0, bad=0, removed_partials=writer.stale_partials)
    for path in writer.stale_partials if echo else ():
        echo(f"removed {path}: the partial output of an earlier conversion to {dest} that was killed")
    bar = None
    if progress is not False:
        from tqdm import tqdm
        bar = tqdm(total=len(keys), unit="img", desc="converting", disable=None if progress is None else False)
    pool = ProcessPoolExecutor(workers, initializer=_worker_init, initargs=(os.getpid(),)) if workers > 1 else None
    try:
        batch = []
        for key, label, payload in source.read(wanted):
            batch.append((key, label, payload))
            if len(batch) >= window:
                _flush(batch, writer, opts, pool, workers, report, stats, bar)
                batch = []
        _flush(batch, writer, opts, pool, workers, report, stats, bar)
        total = writer.count + stats["bad"]
        if writer.count == 0:
            raise DataError(f"none of the {total} images could be used; first problems: " + "; ".join(report[:3]))
        if stats["bad"] / total > opts.max_bad_fraction:
            raise DataError(f"{stats['bad']} of {total} images are unusable, more than --max-bad-fraction "
                            f"{opts.max_bad_fraction}; first problems: " + "; ".join(report[:3]))
        header = writer.close(source.describe(), source.label_names if source.label_names else None, report)
    except BaseException as e:
        writer.abort()
        if report and isinstance(e, DataError):
            with open(os.path.abspath(dest) + "-report.txt", "w") as f:
                f.write("".join(line + "\n" for line in report))
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if bar is not None:
            bar.close()
    return header


def prepare_many(batch, opts: ConvertOptions, pool=None, workers: int = 1, report: list | None = None, bar=None):
    """[(key, label, payload)] -> (uint8 [N, C, R, R] or None, labels or None, number skipped).
    Skipped items are appended to ``report`` with their reason."""
    labels = {key: label for key, label, _ in batch}
    jobs = [(key, payload, opts) for key, _, payload in batch]
    results = pool.map(_prepare_safe, jobs, chunksize=max(1, len(jobs) // (4 * workers))) if pool else map(_prepare_safe, jobs)
    good, good_labels, bad = [], [], 0
    for key, arr, reason in results:
        if arr is None:
            if report is not None:
                report.append(f"{key.decode(errors='replace') if isinstance(key, bytes) else key}: {reason}")
            bad += 1
        else:
            good.append(arr)
            good_labels.append(labels[key])
        if bar is not None:
            bar.update(1)
    if not good:
        return None, None, bad
    return np.stack(good), (good_labels if good_labels[0] is not None else None), bad


def _flush(batch, writer: DatasetWriter, opts: ConvertOptions, pool, workers: int, report: list, stats: dict, bar):
    if not batch:
        return
    stats["max_in_flight"] = max(stats["max_in_flight"], len(batch))
    images, labels, bad = prepare_many(batch, opts, pool, workers, report, bar)
    stats["bad"] += bad
    if images is not None:
        writer.add(images, labels)
