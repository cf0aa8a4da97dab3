"""Readers of the source formats ``pggan dataset create`` understands.

A source lists its items cheaply (``keys()``), then streams ``(key, label, payload)`` for the chosen
keys in its natural order. The payload is either encoded image bytes (decoded later, in a worker) or
an already decoded uint8 array [H, W, C]. Optional per-item geometry (the CelebA-HQ crop) travels
with the payload.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from ..util.errors import first_line
from .base import IMAGE_EXTENSIONS, DataError
from .builtin import SHAPE_KINDS, check_builtin, render_shape, shape_kind

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


class Source:
    kind = "source"
    label_names: list[str] = []

    def keys(self) -> list:
        raise NotImplementedError

    def read(self, keys):
        """Yield (key, label or None, payload) for ``keys`` (a set) in the source's natural order."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


def _label_from_folder(rel: str) -> str | None:
    parts = rel.replace("\\", "/").split("/")
    return parts[-2] if len(parts) > 1 else None


class _NamedFiles(Source):
    """Common labelling for folders and archives: none, sub-folder names, or a labels file."""

    def _setup_labels(self, names: list[str], labels: str | None, labels_file: str | None):
        self._labels = {}
        if labels_file:
            table = _read_labels_file(labels_file)
            classes = sorted(set(table.values()))
            self.label_names = classes
            for n in names:
                key = n if n in table else os.path.basename(n)
                if key in table:
                    self._labels[n] = classes.index(table[key])
            missing = [n for n in names if n not in self._labels]
            if missing:
                raise DataError(f"labels file '{labels_file}' has no label for {len(missing)} image(s), e.g. '{missing[0]}'")
        elif labels == "folders":
            classes = sorted({_label_from_folder(n) or "" for n in names})
            if classes == [""]:
                raise DataError("--labels folders: the images are not in sub-folders, so there are no class names")
            self.label_names = classes
            self._labels = {n: classes.index(_label_from_folder(n) or "") for n in names}
        else:
            self.label_names = []

    def label(self, name: str):
        return self._labels.get(name) if self.label_names else None


def _read_labels_file(path: str) -> dict:
    table = {}
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.replace("\t", ",").split(",")]
            if len(parts) != 2 or not parts[0]:
                raise DataError(f"{path}:{i}: expected 'filename,label', got '{line}'")
            table[parts[0]] = parts[1]
    if not table:
        raise DataError(f"labels file '{path}' is empty")
    return table


class FolderSource(_NamedFiles):
    kind = "folder"

    def __init__(self, root: str, labels=None, labels_file=None):
        self.root = root
        self._all = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)
        self._names = [n for n in self._all if n.lower().endswith(IMAGE_EXTENSIONS)]
        self._setup_labels(self._names, labels, labels_file)

    def ignored(self) -> list[str]:
        return [f"{n}: not an image file type" for n in self._all
                if not n.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(n).startswith(".")]

    def keys(self):
        return list(self._names)

    def read(self, keys):
        for n in self._names:
            if n in keys:
                with open(os.path.join(self.root, n), "rb") as f:
                    yield n, self.label(n), f.read()

    def describe(self):
        return f"folder {self.root}"


class ArchiveSource(_NamedFiles):
    kind = "archive"

    def __init__(self, path: str, labels=None, labels_file=None):
        self.path = path
        self.is_zip = path.lower().endswith(".zip")
        try:
            if self.is_zip:
                with zipfile.ZipFile(path) as z:
                    members = [i.filename for i in z.infolist() if not i.is_dir()]
            else:
                with tarfile.open(path) as t:
                    members = [m.name for m in t.getmembers() if m.isfile()]
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"'{path}' is not a readable {'zip' if self.is_zip else 'tar'} archive: {first_line(e)}") from None
        self._all = members
        self._names = sorted(m for m in members if m.lower().endswith(IMAGE_EXTENSIONS))
        self._setup_labels(self._names, labels, labels_file)

    def ignored(self):
        return [f"{n}: not an image file type" for n in self._all if not n.lower().endswith(IMAGE_EXTENSIONS)]

    def keys(self):
        return list(self._names)

    def read(self, keys):
        if self.is_zip:
            with zipfile.ZipFile(self.path) as z:
                for n in self._names:
                    if n in keys:
                        yield n, self.label(n), z.read(n)
        else:
            with tarfile.open(self.path, mode="r|*") as t:          # one streaming pass, any compression
                for m in t:
                    if m.isfile() and m.name in keys:
                        yield m.name, self.label(m.name), t.extractfile(m).read()

    def describe(self):
        return f"archive {self.path}"


# ---- MNIST -------------------------------------------------------------------------------

def _open_maybe_gz(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"'{path}' is a damaged gzip file ({first_line(e)})") from None


def read_idx(path: str) -> np.ndarray:
    """An idx file (MNIST's format): magic 0x0000 08 NDIM, big-endian dims, uint8 data."""
    data = _open_maybe_gz(path)
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"'{path}' is not an idx file of unsigned bytes (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"'{path}' is truncated: its header ends early")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"'{path}' is truncated: header says {dims}, found {body.size} bytes of data")
    return body.reshape(dims)


def _find(folder: str, stems: tuple[str, ...]) -> str | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = os.path.join(folder, stem + suffix)
            if os.path.isfile(p):
                return p
    return None


class MnistSource(Source):
    """MNIST's train-images-idx3-ubyte / train-labels-idx1-ubyte (gzipped or not); 28x28 padded to 32."""
    kind = "mnist"
    label_names = [str(i) for i in range(10)]

    def __init__(self, folder: str):
        img = _find(folder, ("train-images-idx3-ubyte", "train-images.idx3-ubyte"))
        lab = _find(folder, ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"))
        if img is None or lab is None:
            raise DataError(f"'{folder}' has no MNIST train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
        self.images, self.labels = read_idx(img), read_idx(lab)
        if self.images.ndim != 3 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise DataError(f"MNIST files in '{folder}' do not match: images {self.images.shape}, labels {self.labels.shape}")
        self.folder = folder

    def keys(self):
        return list(range(len(self.images)))

    def read(self, keys):
        for i in range(len(self.images)):
            if i in keys:
                yield i, int(self.labels[i]), np.pad(self.images[i], 2)[..., None]   # 28 -> 32, as the reference

    def describe(self):
        return f"mnist {self.folder}"


# ---- CIFAR -------------------------------------------------------------------------------

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickled dicts of numpy arrays: allow numpy's reconstruction and nothing else."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _unpickle(data: bytes, name: str) -> dict:
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means it is not a CIFAR batch
        raise DataError(f"'{name}' is not a CIFAR python batch: {first_line(e)}") from None
    if not isinstance(d, dict):
        raise DataError(f"'{name}' is not a CIFAR python batch")
    return {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in d.items()}


class CifarSource(Source):
    """CIFAR-10 (data_batch_1..5) or CIFAR-100 (train), as the extracted folder or the .tar.gz."""

    def __init__(self, path: str, which: str):
        self.kind, self.path = which, path
        files = ["train"] if which == "cifar100" else [f"data_batch_{i}" for i in range(1, 6)]
        meta_name = "meta" if which == "cifar100" else "batches.meta"
        blobs = {}
        if os.path.isdir(path):
            for n in files + [meta_name]:
                p = os.path.join(path, n)
                if os.path.isfile(p):
                    with open(p, "rb") as f:
                        blobs[n] = f.read()
        else:
            try:
                with tarfile.open(path) as t:
                    for m in t.getmembers():
                        base = os.path.basename(m.name)
                        if m.isfile() and base in files + [meta_name]:
                            blobs[base] = t.extractfile(m).read()
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataError(f"'{path}' is not a readable CIFAR folder or .tar.gz: {first_line(e)}") from None
        missing = [n for n in files if n not in blobs]
        if missing:
            raise DataError(f"'{path}' is missing CIFAR batch file(s) {', '.join(missing)}")
        try:
            self._parse(blobs, files, meta_name)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as e:
            raise DataError(f"'{path}' holds damaged CIFAR batches ({type(e).__name__}: {first_line(e)})") from None

    def _parse(self, blobs: dict, files: list, meta_name: str) -> None:
        which = self.kind
        key = "fine_labels" if which == "cifar100" else "labels"
        data, labels = [], []
        for n in files:
            d = _unpickle(blobs[n], n)
            if "data" not in d or key not in d:
                raise DataError(f"CIFAR batch '{n}' has no '{key}'; is this {which}?")
            data.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(d[key], dtype=np.int64))
        self.images, self.labels = np.concatenate(data), np.concatenate(labels)
        names_key = "fine_label_names" if which == "cifar100" else "label_names"
        if meta_name in blobs:
            meta = _unpickle(blobs[meta_name], meta_name)
            self.label_names = [x.decode() if isinstance(x, bytes) else str(x) for x in meta.get(names_key, [])]
        if not self.label_names:
            self.label_names = [str(i) for i in range(int(self.labels.max()) + 1)]

    def keys(self):
        return list(range(len(self.images)))

    def read(self, keys):
        for i in range(len(self.images)):
            if i in keys:
                yield i, int(self.labels[i]), self.images[i].transpose(1, 2, 0)

    def describe(self):
        return f"{self.kind} {self.path}"


# ---- LSUN --------------------------------------------------------------------------------

class LsunSource(Source):
    """An exported LSUN category: an LMDB folder (data.mdb) whose values are encoded images."""
    kind = "lsun"

    def __init__(self, path: str):
        try:
            import lmdb
        except ImportError:
            raise DataError("reading LSUN needs the lmdb package: pip install 'pggan[lsun]'") from None
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            raise DataError(f"'{path}' is not an LMDB folder (no data.mdb); give the exported LSUN category folder")
        self.path = path
        _check_lmdb_size(os.path.join(path, "data.mdb"))
        try:
            self._env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=4)
            with self._env.begin() as txn:
                self._keys = [k for k, _ in txn.cursor()]
        except lmdb.Error as e:
            raise DataError(f"'{path}' is a damaged LMDB database ({first_line(e)})") from None

    def keys(self):
        return list(self._keys)

    def read(self, keys):
        import lmdb
        try:
            with self._env.begin() as txn:
                for k, v in txn.cursor():
                    if k in keys:
                        yield k, None, bytes(v)
        except lmdb.Error as e:
            raise DataError(f"'{self.path}' is a damaged LMDB database ({first_line(e)})") from None


def _check_lmdb_size(path: str) -> None:
    """LMDB memory-maps data.mdb: a file shorter than its newest meta page says would crash the process
    (SIGBUS) on the first read past its end, so the sizes are compared before opening it."""
    with open(path, "rb") as f:
        head = f.read(1 << 17)
    size, best = os.path.getsize(path), None
    first_psize = struct.unpack_from("<I", head, 40)[0] if len(head) >= 44 else 0
    for off in (0, first_psize):                    # the two meta pages: pages 0 and 1
        if off > 1 << 16 or len(head) < off + 152:
            continue
        magic, psize = struct.unpack_from("<I", head, off + 16)[0], struct.unpack_from("<I", head, off + 40)[0]
        last_pg, txnid = struct.unpack_from("<QQ", head, off + 136)
        if magic == 0xBEEFC0DE and (best is None or txnid > best[2]):
            best = (psize, last_pg, txnid)
    if best is None or best[0] < 512 or best[0] & (best[0] - 1) or size < (best[1] + 1) * best[0]:
        raise DataError(f"'{path}' is truncated or not an LMDB file; export the LSUN category again")

    def describe(self):
        return f"lsun {self.path}"


# ---- CelebA ------------------------------------------------------------------------------

class CelebASource(FolderSource):
    """CelebA aligned (img_align_celeba): the reference's 128x128 crop centred at x=89, y=121."""
    kind = "celeba"

    def read(self, keys):
        for key, label, data in super().read(keys):
            yield key, label, {"bytes": data, "crop": (89 - 64, 121 - 64, 89 + 64, 121 + 64)}


def read_landmarks(path: str) -> dict:
    """list_landmarks_celeba.txt: count, header, then 'name x y' * 5 (eyes, nose, mouth corners)."""
    table = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        parts = line.split()
        if len(parts) == 11 and parts[0].lower().endswith(IMAGE_EXTENSIONS):
            try:
                table[parts[0]] = np.array([float(v) for v in parts[1:]], dtype=np.float64).reshape(5, 2)
            except ValueError:
                raise DataError(f"{path}: cannot read landmarks line '{line}'") from None
    if not table:
        raise DataError(f"'{path}' has no landmark lines ('name lefteye_x lefteye_y ... rightmouth_y')")
    return table


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def celebahq_quad(lm: np.ndarray) -> np.ndarray:
    """Appendix C's oriented crop, corners (4 x [x, y], PIL QUAD order: UL, LL, LR, UR) from the eye and
    mouth landmarks. In image coordinates (y down), with e2m = mouth - eyes = -y', the paper's
    x = Normalize(x' - Rotate90(y')) is x' - rot90(e2m) with rot90(a, b) = (-b, a); c = eyes + 0.1 * e2m;
    the side is s = max(4 |x'|, 3.6 |y'|). Landmarks are pixel indices; +0.5 moves them to pixel centres."""
    eyes = 0.5 * (lm[0] + lm[1]) + 0.5
    mouth = 0.5 * (lm[3] + lm[4]) + 0.5
    e2e, e2m = lm[1] - lm[0], mouth - eyes
    x = e2e - _rot90(e2m)
    x = x / np.hypot(*x)
    y = _rot90(x)
    half = max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    c = eyes + 0.1 * e2m
    x, y = x * half, y * half
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


class CelebAHQSource(FolderSource):
    """CelebA in-the-wild images + list_landmarks_celeba.txt -> the paper's oriented crops (appendix C)."""
    kind = "celebahq"

    def __init__(self, root: str, landmarks: str | None):
        super().__init__(root)
        if landmarks is None:
            landmarks = os.path.join(root, "list_landmarks_celeba.txt")
        if not os.path.isfile(landmarks):
            raise DataError(f"celebahq needs the landmarks file: --landmarks list_landmarks_celeba.txt (not found: {landmarks})")
        self.landmarks = read_landmarks(landmarks)
        self._names = [n for n in self._names if os.path.basename(n) in self.landmarks]
        if not self._names:
            raise DataError(f"none of the images under '{root}' has landmarks in '{landmarks}'")

    def read(self, keys):
        for key, label, data in super().read(keys):
            yield key, label, {"bytes": data, "quad": celebahq_quad(self.landmarks[os.path.basename(key)])}


# ---- builtin -----------------------------------------------------------------------------

class BuiltinSource(Source):
    """Rendered images: items are final pixels ({"pixels": uint8 [C, R, R]}), nothing to decode; each
    labelled with its shape (as MNIST with its digit), used only by a conditional run."""

    def __init__(self, name: str, count: int, resolution: int, seed: int, channels: int = 3):
        check_builtin(name)
        self.kind, self.name, self.count, self.seed = "builtin", name, count, seed
        self.resolution, self.channels = resolution, channels
        self.label_names = list(SHAPE_KINDS)

    def keys(self):
        return list(range(self.count))

    def read(self, keys):
        for i in range(self.count):
            if i in keys:
                pixels = render_shape(self.seed, i, self.resolution, self.channels)
                yield i, shape_kind(self.seed, i), {"pixels": pixels}

    def describe(self):
        return f"builtin:{self.name} (seed {self.seed})"


KINDS = ("auto", "folder", "archive", "mnist", "cifar10", "cifar100", "lsun", "celeba", "celebahq", "builtin")


def open_source(source: str, kind: str = "auto", *, labels=None, labels_file=None, landmarks=None,
                count: int | None = None, resolution: int = 0, seed: int = 0, channels: int = 3) -> Source:
    if source.startswith("builtin:"):
        return BuiltinSource(source.split(":", 1)[1], count or 10000, resolution, seed, channels)
    if not os.path.exists(source):
        raise DataError(f"source '{source}' does not exist")
    if kind == "auto":
        kind = _guess_kind(source)
    if kind in ("folder", "celeba", "celebahq") and not os.path.isdir(source):
        raise DataError(f"--format {kind} expects a folder, but '{source}' is a file")
    if kind == "folder":
        return FolderSource(source, labels, labels_file)
    if kind == "archive":
        if not source.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"'{source}' is not a .zip or .tar archive")
        return ArchiveSource(source, labels, labels_file)
    if kind == "mnist":
        return MnistSource(source if os.path.isdir(source) else os.path.dirname(source))
    if kind in ("cifar10", "cifar100"):
        return CifarSource(source, kind)
    if kind == "lsun":
        return LsunSource(source)
    if kind == "celeba":
        return CelebASource(source)
    if kind == "celebahq":
        return CelebAHQSource(source, landmarks)
    raise DataError(f"unknown --format '{kind}'; choose one of {', '.join(KINDS)}")


def _guess_kind(path: str) -> str:
    low = path.lower()
    if os.path.isfile(path):
        if "cifar-100" in low:
            return "cifar100"
        if "cifar-10" in low:
            return "cifar10"
        if low.endswith(ARCHIVE_SUFFIXES):
            return "archive"
        raise DataError(f"cannot tell what '{path}' is; pass --format ({', '.join(KINDS[1:])})")
    entries = set(os.listdir(path))
    if "data.mdb" in entries:
        return "lsun"
    if any(e.startswith("train-images") for e in entries):
        return "mnist"
    if "data_batch_1" in entries:
        return "cifar10"
    if {"train", "meta"} <= entries:
        return "cifar100"
    return "folder"
