"""The pggan dataset format: every level from 4x4 to full resolution, memory-mapped.

A dataset is a folder::

    dataset.json        header: format, version, count, resolution, channels, levels, label names,
                        source description, sha256 of every level file and of the labels
    level-0004.u8 ...   raw uint8 [count, channels, r, r], C order: image i at level r is one slice
    level-RRRR.png/.idx optional, for levels >= --compress-from: one lossless PNG per image back to back,
                        and the int64 offsets of each (decoded on read)
    labels.u8 / .i64    optional class index per image (int64)
    report.txt          files that were skipped, one per line with the reason

Each level is the exact 2x2 box average of the level above, rounded half up, as the reference's
datasets store them, so a minibatch at resolution r reads r*r bytes per image and no resampling is
done while training. Folders are written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil

import numpy as np

from ..util.checks import is_resolution
from ..util.errors import first_line
from ..util.files import LOCK_NAME, about, partial_dir
from .base import DataError, ImageSet, box_downsample_uint8

FORMAT = "pggan-dataset"
VERSION = 1
HEADER = "dataset.json"


def level_file(res: int) -> str:
    return f"level-{res:04d}.u8"


def png_files(res: int) -> tuple[str, str]:
    """A compressed level: the images' PNG files back to back, and their int64 start offsets (N + 1)."""
    return f"level-{res:04d}.png", f"level-{res:04d}.idx"


class PNGLevel:
    """A level stored as one lossless PNG per image; indexing decodes just the images asked for."""

    def __init__(self, data_path: str, index_path: str, shape: tuple):
        self.shape, self.path = shape, data_path
        self.offsets = np.fromfile(index_path, dtype=np.int64)
        if (len(self.offsets) != shape[0] + 1 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) < 0)
                or self.offsets[-1] != os.path.getsize(data_path)):
            raise DataError(f"'{data_path}' does not match its index {os.path.basename(index_path)}: the dataset is "
                            f"damaged; run `pggan dataset verify {os.path.dirname(data_path)}`")
        self.data = np.memmap(data_path, dtype=np.uint8, mode="r") if self.offsets[-1] > 0 else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def _decode(self, i: int) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(self.data[self.offsets[i]:self.offsets[i + 1]].tobytes())) as im:
                a = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as e:       # PIL's errors for damaged data
            raise DataError(f"image {i} of '{self.path}' cannot be decoded ({first_line(e)}): the dataset is damaged; "
                            f"run `pggan dataset verify {os.path.dirname(self.path)}`") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if a.shape != tuple(self.shape[1:]):
            raise DataError(f"image {i} of '{self.path}' has shape {a.shape}, not {tuple(self.shape[1:])}: the dataset "
                            f"is damaged; run `pggan dataset verify {os.path.dirname(self.path)}`")
        return a

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self._decode(int(idx))
        ids = range(*idx.indices(len(self))) if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        out = np.empty((len(ids),) + tuple(self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(ids):
            out[j] = self._decode(int(i))
        return out

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)


def _encode_png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def is_dataset(path: str) -> bool:
    return os.path.isfile(os.path.join(path, HEADER))


class DatasetWriter:
    """Streams chunks of full-resolution images into a new dataset folder; ``close()`` publishes it."""

    def __init__(self, dest: str, resolution: int, channels: int, overwrite: bool = False, compress_from: int = 0):
        dest = os.path.abspath(dest)
        if os.path.exists(dest) and not overwrite:
            raise DataError(f"'{dest}' already exists; choose a new destination (or pass --overwrite)")
        self.dest, self.resolution, self.channels = dest, resolution, channels
        # stale_partials: folders left by writers of ``dest`` that died (kill -9), removed now
        self.tmp, self._lock_fd, self.stale_partials = partial_dir(dest)
        self.levels = [2 ** k for k in range(2, resolution.bit_length())]
        self.compressed = [r for r in self.levels if compress_from and r >= compress_from]
        names = {r: png_files(r)[0] if r in self.compressed else level_file(r) for r in self.levels}
        self._files = {r: open(os.path.join(self.tmp, names[r]), "wb") for r in self.levels}
        self._hash = {r: hashlib.sha256() for r in self.levels}
        self._offsets = {r: [0] for r in self.compressed}
        self.labels: list[int] = []
        self.count = 0

    def add(self, images: np.ndarray, labels=None) -> None:
        """images: uint8 [N, C, R, R] at full resolution."""
        try:
            self._add(images, labels)
        except OSError as e:
            raise about(e, self.dest) from None

    def _add(self, images: np.ndarray, labels) -> None:
        assert images.dtype == np.uint8 and images.shape[1:] == (self.channels, self.resolution, self.resolution)
        level = np.ascontiguousarray(images)
        for r in sorted(self.levels, reverse=True):
            if r != self.resolution:
                level = box_downsample_uint8(level)
            if r in self.compressed:
                for img in level:
                    data = _encode_png(img)
                    self._files[r].write(data)
                    self._hash[r].update(data)
                    self._offsets[r].append(self._offsets[r][-1] + len(data))
            else:
                data = level.tobytes()
                self._files[r].write(data)
                self._hash[r].update(data)
        if labels is not None:
            self.labels.extend(int(x) for x in labels)
        self.count += len(images)

    def close(self, source: str, label_names: list[str] | None = None, report: list[str] | None = None) -> dict:
        """Finish the files and publish the folder as ``dest``; returns the header."""
        try:
            return self._close(source, label_names, report)
        except OSError as e:
            raise about(e, self.dest) from None

    def _close(self, source: str, label_names: list[str] | None, report: list[str] | None) -> dict:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        header = {"format": FORMAT, "version": VERSION, "count": self.count, "resolution": self.resolution,
                  "channels": self.channels, "levels": self.levels, "compressed_levels": self.compressed,
                  "source": source, "label_names": label_names or [], "label_size": len(label_names or []),
                  "sha256": {str(r): self._hash[r].hexdigest() for r in self.levels}}
        for r in self.compressed:
            data = np.asarray(self._offsets[r], dtype=np.int64).tobytes()
            with open(os.path.join(self.tmp, png_files(r)[1]), "wb") as f:
                f.write(data)
            header["sha256"][f"{r}.idx"] = hashlib.sha256(data).hexdigest()
        if label_names:
            if len(self.labels) != self.count:
                raise DataError("internal error: labels and images out of step")
            data = np.asarray(self.labels, dtype=np.int64).tobytes()
            with open(os.path.join(self.tmp, "labels.i64"), "wb") as f:
                f.write(data)
            header["sha256"]["labels"] = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.tmp, "report.txt"), "w") as f:
            f.write("".join(line + "\n" for line in (report or [])))
        with open(os.path.join(self.tmp, HEADER), "w") as f:
            json.dump(header, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(self.dest):
            shutil.rmtree(self.dest)
        os.remove(os.path.join(self.tmp, LOCK_NAME))
        os.replace(self.tmp, self.dest)
        os.close(self._lock_fd)
        return header

    def abort(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.close(self._lock_fd)


def read_header(path: str) -> dict:
    hp = os.path.join(path, HEADER)
    if not os.path.isfile(hp):
        raise DataError(f"'{path}' is not a pggan dataset (no {HEADER}); make one with `pggan dataset create`")
    try:
        with open(hp) as f:
            h = json.load(f)
    except (ValueError, OSError) as e:
        raise DataError(f"'{hp}' is unreadable: {first_line(e)}") from None
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        raise DataError(f"'{hp}' is not a pggan dataset header")
    if h.get("version") != VERSION:
        raise DataError(f"'{path}' has dataset format version {h.get('version')}; this pggan reads {VERSION}")
    if not _header_is_sound(h):
        raise DataError(f"'{hp}' is damaged (missing or inconsistent fields); make the dataset again with "
                        f"`pggan dataset create`")
    return h


def _header_is_sound(h: dict) -> bool:
    def ints(x):
        return isinstance(x, list) and all(type(v) is int for v in x)
    res, levels = h.get("resolution"), h.get("levels")
    return (type(h.get("count")) is int and h["count"] >= 0 and type(res) is int and is_resolution(res)
            and h.get("channels") in (1, 3) and ints(levels) and levels == [2 ** k for k in range(2, res.bit_length())]
            and ints(h.get("compressed_levels", [])) and set(h.get("compressed_levels", [])) <= set(levels)
            and type(h.get("label_size", 0)) is int and h.get("label_size", 0) >= 0
            and isinstance(h.get("label_names", []), list) and isinstance(h.get("sha256"), dict))


def open_dataset(path: str, resolution: int | None = None) -> ImageSet:
    """The dataset's levels as read-only memory maps (up to ``resolution`` if given)."""
    h = read_header(path)
    n, c, full = h["count"], h["channels"], h["resolution"]
    top = resolution or full
    if top > full:
        raise DataError(f"dataset '{path}' is {full}x{full}; it cannot train a {top}x{top} network "
                        f"(use --resolution {full} or convert the source at {top})")
    levels = {}
    compressed = set(h.get("compressed_levels", []))
    for r in h["levels"]:
        if r > top:
            continue
        if r in compressed:
            data, index = (os.path.join(path, f) for f in png_files(r))
            if not os.path.isfile(index) or os.path.getsize(index) != 8 * (n + 1) or not os.path.isfile(data):
                raise DataError(f"dataset '{path}': the compressed level {r} is missing or damaged; "
                                f"run `pggan dataset verify {path}`")
            levels[r] = PNGLevel(data, index, (n, c, r, r))
            continue
        fp = os.path.join(path, level_file(r))
        expected = n * c * r * r
        if not os.path.isfile(fp) or os.path.getsize(fp) != expected:
            raise DataError(f"dataset '{path}': {level_file(r)} is missing or has the wrong size "
                            f"(expected {expected} bytes); run `pggan dataset verify {path}`")
        levels[r] = np.memmap(fp, dtype=np.uint8, mode="r", shape=(n, c, r, r))
    labels = None
    if h.get("label_size"):
        labels = np.fromfile(os.path.join(path, "labels.i64"), dtype=np.int64)
    desc = f"dataset {path} ({n} images at {full}x{full}, {c} channel{'s' if c > 1 else ''})"
    return ImageSet(levels, labels, int(h.get("label_size", 0)), desc)


def verify_dataset(path: str, deep: bool = False, chunk: int = 1024) -> list[str]:
    """Problems found (empty if none): checksums of every file; with ``deep``, that each level is the
    box average of the level above."""
    h = read_header(path)
    problems = []
    compressed = set(h.get("compressed_levels", []))
    names = {str(r): png_files(r)[0] if r in compressed else level_file(r) for r in h["levels"]}
    names.update({f"{r}.idx": png_files(r)[1] for r in compressed})
    if h.get("label_size"):
        names["labels"] = "labels.i64"
    for key, name in names.items():
        fp = os.path.join(path, name)
        if not os.path.isfile(fp):
            problems.append(f"{name}: missing")
            continue
        digest = hashlib.sha256()
        with open(fp, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != h["sha256"].get(key):
            problems.append(f"{name}: checksum mismatch (the file changed or is corrupt)")
    if deep and not problems:
        ds = open_dataset(path)
        for r in sorted(ds.levels)[1:]:
            for i in range(0, len(ds), chunk):
                if not np.array_equal(box_downsample_uint8(np.asarray(ds.levels[r][i:i + chunk])),
                                      ds.levels[r // 2][i:i + chunk]):
                    problems.append(f"level {r // 2} is not the box average of level {r} (images {i}..)")
                    break
    return problems


def disk_bytes(count: int, resolution: int, channels: int) -> dict:
    """Bytes per level and in total for a dataset of this size."""
    per = {2 ** k: count * channels * 4 ** k for k in range(2, resolution.bit_length())}
    return dict(per, total=sum(per.values()))
