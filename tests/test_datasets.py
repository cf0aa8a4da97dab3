import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pggan.cli import main
from pggan.data.base import DataError, box_downsample_uint8
from pggan.data.create import ConvertOptions, create_dataset, prepare, window_size
from pggan.data.dataset import disk_bytes, open_dataset, verify_dataset
from pggan.data.sources import celebahq_quad, open_source


def _png(arr, fmt="PNG", **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _create(src, dest, res=16, kind="auto", **kw):
    opts = ConvertOptions(resolution=res, workers=kw.pop("workers", 1), **kw)
    source = open_source(str(src), kind) if not hasattr(src, "keys") else src
    return create_dataset(source, str(dest), opts, progress=False)


def test_format_levels_are_rounded_box_averages(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(_png(_rgb(32, 32, i)))
    h = _create(folder, tmp_path / "ds", res=32)
    assert h["count"] == 5 and h["levels"] == [4, 8, 16, 32]
    ds = open_dataset(str(tmp_path / "ds"))
    full = np.stack([np.asarray(Image.open(folder / f"{i}.png")).transpose(2, 0, 1) for i in range(5)])
    assert np.array_equal(np.asarray(ds.levels[32]), full)
    a = full.astype(np.float64)
    want16 = np.floor((a[..., ::2, ::2] + a[..., 1::2, ::2] + a[..., ::2, 1::2] + a[..., 1::2, 1::2]) / 4 + 0.5)
    assert np.array_equal(np.asarray(ds.levels[16]), want16.astype(np.uint8))
    assert np.array_equal(np.asarray(ds.levels[4]), box_downsample_uint8(np.asarray(ds.levels[8])))
    assert isinstance(ds.levels[8], np.memmap)
    # one image at one level is one contiguous slice of its file
    raw = np.fromfile(tmp_path / "ds" / "level-0008.u8", dtype=np.uint8)
    assert np.array_equal(raw[2 * 3 * 64:3 * 3 * 64].reshape(3, 8, 8), ds.levels[8][2])
    assert verify_dataset(str(tmp_path / "ds"), deep=True) == []


def test_verify_detects_corruption(tmp_path):
    _create(open_source("builtin:shapes", count=8, resolution=16), tmp_path / "ds")
    path = tmp_path / "ds" / "level-0008.u8"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert any("checksum mismatch" in p for p in verify_dataset(str(tmp_path / "ds")))
    r = CliRunner().invoke(main, ["dataset", "verify", str(tmp_path / "ds")])
    assert r.exit_code == 1 and "problem" in r.output


def test_folder_formats_and_labels(tmp_path):
    root = tmp_path / "pets"
    for cls, fmt, ext in [("cat", "PNG", "png"), ("cat", "JPEG", "jpg"), ("dog", "WEBP", "webp"),
                          ("dog", "BMP", "bmp"), ("fox", "TIFF", "tiff")]:
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"a.{ext}").write_bytes(_png(_rgb(20, 20), fmt))
    source = open_source(str(root), labels="folders")
    h = _create(source, tmp_path / "ds")
    assert h["count"] == 5 and h["label_names"] == ["cat", "dog", "fox"]
    ds = open_dataset(str(tmp_path / "ds"))
    assert sorted(ds.labels.tolist()) == [0, 0, 1, 1, 2]
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("cat/a.png,x\ncat/a.jpg,y\ndog/a.webp,x\ndog/a.bmp,y\nfox/a.tiff,y\n")
    h = _create(open_source(str(root), labels_file=str(labels_file)), tmp_path / "ds2")
    assert h["label_names"] == ["x", "y"]
    assert open_dataset(str(tmp_path / "ds2")).labels.tolist() == [1, 0, 1, 0, 1]


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_archives(tmp_path, suffix):
    path = tmp_path / f"imgs{suffix}"
    files = {f"d/{i}.png": _png(_rgb(16, 16, i)) for i in range(4)}
    files["readme.txt"] = b"hello"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as z:
            for n, b in files.items():
                z.writestr(n, b)
    else:
        with tarfile.open(path, "w:gz" if suffix.endswith("gz") else "w") as t:
            for n, b in files.items():
                info = tarfile.TarInfo(n)
                info.size = len(b)
                t.addfile(info, io.BytesIO(b))
    h = _create(path, tmp_path / "ds")
    assert h["count"] == 4
    assert "readme.txt: not an image file type" in (tmp_path / "ds" / "report.txt").read_text()
    assert np.array_equal(open_dataset(str(tmp_path / "ds")).levels[16][2],
                          _rgb(16, 16, 2).transpose(2, 0, 1))


def _idx(arr, gz):
    data = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    return gzip.compress(data) if gz else data


@pytest.mark.parametrize("gz", [False, True])
def test_mnist(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    sfx = ".gz" if gz else ""
    (tmp_path / f"train-images-idx3-ubyte{sfx}").write_bytes(_idx(images, gz))
    (tmp_path / f"train-labels-idx1-ubyte{sfx}").write_bytes(_idx(labels, gz))
    h = _create(tmp_path, tmp_path / "ds", res=32, channels=1)
    ds = open_dataset(str(tmp_path / "ds"))
    assert h["count"] == 6 and h["label_size"] == 10 and ds.channels == 1
    assert np.array_equal(ds.levels[32][0, 0], np.pad(images[0], 2))
    assert ds.labels.tolist() == [3, 1, 4, 1, 5, 9]


def test_mnist_bad_magic(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 16)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(1, np.uint8), False))
    with pytest.raises(DataError, match="bad magic"):
        open_source(str(tmp_path), "mnist")


def _cifar_batch(n, key, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: list(rng.integers(0, 10, n)),
            b"batch_label": b"x"}


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar10(tmp_path, as_tar):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [_cifar_batch(3, b"labels", i) for i in range(5)]
    for i, b in enumerate(batches, 1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(b, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    src = folder
    if as_tar:
        src = tmp_path / "cifar-10-python.tar.gz"
        with tarfile.open(src, "w:gz") as t:
            t.add(folder, arcname="cifar-10-batches-py")
    h = _create(src, tmp_path / "ds", res=32)
    ds = open_dataset(str(tmp_path / "ds"))
    assert h["count"] == 15 and h["label_names"][3] == "c3"
    assert np.array_equal(ds.levels[32][4], batches[1][b"data"][1].reshape(3, 32, 32))
    assert ds.labels[4] == batches[1][b"labels"][1]


def test_cifar100_and_refused_pickle(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(pickle.dumps(_cifar_batch(4, b"fine_labels", 0)))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"apple"] * 100}))
    h = _create(folder, tmp_path / "ds", res=32)
    assert h["count"] == 4 and h["label_size"] == 100

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    (folder / "train").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="refusing"):
        open_source(str(folder), "cifar100")
    assert not (tmp_path / "pwned").exists()


def test_lsun_lmdb(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open(str(tmp_path / "bedroom_train_lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(3):
            txn.put(f"key{i}".encode(), _png(_rgb(30, 40, i), "WEBP", lossless=True))
        txn.put(b"bad", b"garbage")
    env.close()
    h = _create(tmp_path / "bedroom_train_lmdb", tmp_path / "ds", res=16)
    assert h["count"] == 3
    assert "garbage" not in (tmp_path / "ds" / "report.txt").read_text()
    assert "bad: not an image" in (tmp_path / "ds" / "report.txt").read_text()


def test_celeba_aligned_crop(tmp_path):
    img = np.zeros((218, 178, 3), dtype=np.uint8)
    img[121 - 64:121 + 64, 89 - 64:89 + 64] = (200, 30, 30)    # exactly the crop box
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    (folder / "000001.png").write_bytes(_png(img))
    _create(folder, tmp_path / "ds", res=128, kind="celeba")
    ds = open_dataset(str(tmp_path / "ds"))
    assert (np.asarray(ds.levels[128][0]).reshape(3, -1).T == (200, 30, 30)).all()


def test_celebahq_geometry(tmp_path):
    lm = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], float)
    q = celebahq_quad(lm)
    assert np.allclose(q, [[10.5, 12.5], [10.5, 92.5], [90.5, 92.5], [90.5, 12.5]])   # c=(50.5,52.5), s=80
    # rotating the face rotates the crop with it
    th = np.deg2rad(30)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    q2 = celebahq_quad((lm + 0.5 - 50) @ rot.T + 50 - 0.5)
    assert np.allclose(q2, (q - 50) @ rot.T + 50, atol=1e-9)

    # an image whose crop region is a solid colour, with landmarks: the output is that colour
    img = np.zeros((120, 100, 3), dtype=np.uint8)
    img[12:93, 10:91] = (10, 200, 10)
    folder = tmp_path / "wild"
    folder.mkdir()
    (folder / "000001.png").write_bytes(_png(img))
    (folder / "list_landmarks_celeba.txt").write_text(
        "1\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y\n"
        "000001.png 40 50 60 50 50 60 42 70 58 70\n")
    _create(open_source(str(folder), "celebahq"), tmp_path / "ds", res=16)
    out = np.asarray(open_dataset(str(tmp_path / "ds")).levels[16][0]).astype(int)
    assert np.abs(out[:, 1:-1, 1:-1] - np.array([10, 200, 10])[:, None, None]).max() <= 2
    # a face near the border is mirror-padded, not cut
    (folder / "list_landmarks_celeba.txt").write_text(
        "1\nheader\n000001.png 5 20 25 20 15 30 7 40 23 40\n")
    _create(open_source(str(folder), "celebahq"), tmp_path / "ds2", res=16)


def _bad_inputs(folder):
    good = _rgb(40, 40)
    png = _png(good)
    files = {
        "ok.png": png,
        "truncated.png": png[: len(png) // 2],
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + os.urandom(200),
        "zero.png": b"",
        "text.png": b"this is not an image at all",
        "tiny.png": _png(_rgb(8, 8)),
    }
    # a decompression bomb: a tiny file that claims a huge image
    bomb = Image.new("L", (20000, 20000))
    buf = io.BytesIO()
    bomb.save(buf, format="PNG", optimize=True)
    files["bomb.png"] = buf.getvalue()
    files["gray.png"] = _png(good[..., 0])
    rgba = np.dstack([good, np.zeros((40, 40), np.uint8)])                  # fully transparent
    files["rgba.png"] = _png(rgba)
    files["palette.png"] = _png(good) and _pal(good)
    files["sixteen.png"] = _png16()
    files["cmyk.jpg"] = _cmyk(good)
    files["exif.jpg"] = _exif_rotated()
    files["wide.png"] = _png(_rgb(40, 80))
    for n, b in files.items():
        (folder / n).write_bytes(b)
    return files


def _pal(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).convert("P").save(buf, format="PNG")
    return buf.getvalue()


def _png16():
    a = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _cmyk(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).convert("CMYK").save(buf, format="JPEG")
    return buf.getvalue()


def _exif_rotated():
    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = 255                                 # left half white as stored
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6                                # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_bad_inputs_are_skipped_and_reported(tmp_path):
    folder = tmp_path / "mess"
    folder.mkdir()
    _bad_inputs(folder)
    h = _create(folder, tmp_path / "ds", res=32, max_pixels=10_000_000, background=(0, 0, 255), workers=2)
    report = (tmp_path / "ds" / "report.txt").read_text()
    for name, reason in [("truncated.png", "truncated or corrupt"), ("corrupt.jpg", ""), ("zero.png", "empty file"),
                         ("text.png", "not an image"), ("tiny.png", "too small"), ("bomb.png", "decompression bomb")]:
        assert f"{name}: {reason}" in report, report
    ds = open_dataset(str(tmp_path / "ds"))
    names = sorted(["ok.png", "gray.png", "rgba.png", "palette.png", "sixteen.png", "cmyk.jpg", "exif.jpg", "wide.png"])
    assert h["count"] == len(names)
    img = {n: np.asarray(ds.levels[32][i]) for i, n in enumerate(names)}
    assert (img["rgba.png"].reshape(3, -1).T == (0, 0, 255)).all()            # composited on the background
    assert np.ptp(img["gray.png"], axis=0).max() == 0                           # grey stays grey in RGB
    assert img["sixteen.png"].max() > 200                                       # 16 bit scaled, not clipped to 255s
    # EXIF orientation 6: the stored left half (white) becomes the top
    ex = img["exif.jpg"].mean(axis=0)
    assert ex[:12].mean() > 200 and ex[-12:].mean() < 50


def test_bad_input_thresholds_and_nothing_left_behind(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"nope")
    (folder / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 2 images"):
        _create(folder, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]
    assert "a.png" in (tmp_path / "ds-report.txt").read_text()
    (folder / "c.png").write_bytes(_png(_rgb(16, 16)))
    with pytest.raises(DataError, match="more than --max-bad-fraction"):
        _create(folder, tmp_path / "ds", max_bad_fraction=0.5)
    assert _create(folder, tmp_path / "ds", max_bad_fraction=0.9)["count"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images found"):
        _create(empty, tmp_path / "ds3")


def test_wrong_reader_for_the_source(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.png").write_bytes(_png(_rgb(16, 16)))
    with pytest.raises(DataError, match="no MNIST"):
        open_source(str(folder), "mnist")
    with pytest.raises(DataError, match="CIFAR"):
        open_source(str(folder), "cifar10")
    with pytest.raises(DataError, match="not an LMDB"):
        open_source(str(folder), "lsun")
    with pytest.raises(DataError, match="not a .zip or .tar"):
        open_source(str(folder / "x.png"), "archive")
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        open_source(str(tmp_path / "fake.zip"))


def test_square_pad_and_upscale():
    o = ConvertOptions(resolution=32, square="pad", small="upscale", background=(0, 255, 0))
    out = prepare(_png(np.full((8, 16, 3), 255, np.uint8)), o)
    assert out.shape == (3, 32, 32)
    assert (out[:, 0, 16] == (0, 255, 0)).all() and (out[:, 16, 16] == 255).all()


def test_streaming_memory_is_bounded(tmp_path):
    opts = ConvertOptions(resolution=64, max_memory_mb=16, workers=1)
    assert window_size(opts) * 4 * 3 * 64 * 64 <= 16 * 2 ** 20
    stats = {}
    src = open_source("builtin:shapes", count=400, resolution=64)
    opts = ConvertOptions(resolution=64, workers=1, max_memory_mb=16)
    # shrink the budget's unit so that the window is small and many windows are needed
    import pggan.data.create as conv
    real = conv.window_size
    conv.window_size = lambda o: 50
    try:
        h = create_dataset(src, str(tmp_path / "ds"), opts, progress=False, stats=stats)
    finally:
        conv.window_size = real
    assert h["count"] == 400 and stats["max_in_flight"] == 50


def test_cli_create_info_show_and_training_on_it(tmp_path):
    r = CliRunner().invoke(main, ["dataset", "create", "builtin:shapes", str(tmp_path / "ds"), "--resolution", "16",
                                  "--count", "64", "--no-progress", "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "64 images at 16x16" in r.output
    r = CliRunner().invoke(main, ["dataset", "info", str(tmp_path / "ds")])
    assert "level   16x16" in r.output and r.exit_code == 0
    r = CliRunner().invoke(main, ["dataset", "show", str(tmp_path / "ds"), "--level", "8", "--count", "16",
                                  "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0 and Image.open(tmp_path / "s.png").size == (256, 256)
    r = CliRunner().invoke(main, ["dataset", "create", "builtin:shapes", str(tmp_path / "ds"), "--resolution", "16"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = CliRunner().invoke(main, ["dataset", "create", str(tmp_path / "nothing"), str(tmp_path / "d2"), "--resolution", "16"])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = CliRunner().invoke(main, ["dataset", "info", str(tmp_path)])
    assert r.exit_code == 1 and "not a pggan dataset" in r.output
    # training reads the dataset, and refuses a resolution above it
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "ds"), "--resolution", "32", "--outdir",
                                  str(tmp_path / "runs"), "--no-progress"])
    assert r.exit_code == 1 and "cannot train a 32x32" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "ds"), "--resolution", "8", "--kimg", "0.05",
                                  "--outdir", str(tmp_path / "runs"), "--no-progress"])
    assert r.exit_code == 0, r.output


def test_disk_cost():
    d = disk_bytes(30000, 1024, 3)
    assert d[1024] == 30000 * 3 * 1024 * 1024 and round(d[1024] / 1e9) == 94
    assert d["total"] < d[1024] * 4 / 3 + 1


def test_data_order_is_deterministic_resumable_and_sharded():
    import torch

    from pggan.data.base import ImageSet
    from pggan.training.sampler import DataOrder, minibatch

    images = ImageSet.from_full(np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(4, 2).repeat(4, 3))
    a = DataOrder(10, seed=3, mirror=False)
    seq = [a.take(4)[0] for _ in range(6)]                      # crosses epochs
    assert sorted(np.concatenate(seq[:2] + [seq[2][:2]]).tolist()) == list(range(10))
    b = DataOrder(10, seed=3, mirror=False)
    b.take(4)
    c = DataOrder(10, seed=3, mirror=False, **b.state())        # resume from a saved state
    assert [c.take(4)[0].tolist() for _ in range(5)] == [s.tolist() for s in seq[1:]]
    full, _ = minibatch(images, DataOrder(10, 5, False), 4, 4, torch.device("cpu"))
    shards = [minibatch(images, DataOrder(10, 5, False), 4, 4, torch.device("cpu"), rank=r, world=2)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(shards), full)


def test_compressed_top_levels_read_back_exactly(tmp_path):
    src = open_source("builtin:shapes", count=20, resolution=32)
    create_dataset(src, str(tmp_path / "raw"), ConvertOptions(resolution=32, workers=1), progress=False)
    h = create_dataset(open_source("builtin:shapes", count=20, resolution=32), str(tmp_path / "png"),
                       ConvertOptions(resolution=32, workers=1, compress_from=16), progress=False)
    assert h["compressed_levels"] == [16, 32]
    raw, png = open_dataset(str(tmp_path / "raw")), open_dataset(str(tmp_path / "png"))
    for r in (4, 8, 16, 32):
        assert np.array_equal(np.asarray(png.levels[r]), np.asarray(raw.levels[r]))
    idx = np.array([7, 3, 3, 19])
    assert np.array_equal(png.levels[32][idx], raw.levels[32][idx])
    assert verify_dataset(str(tmp_path / "png"), deep=True) == []
    assert not (tmp_path / "png" / "level-0032.u8").exists()
    r = CliRunner().invoke(main, ["dataset", "info", str(tmp_path / "png")])
    assert "(PNG)" in r.output
    # the loader and training read it like any dataset
    import torch

    from pggan.training.sampler import DataOrder, minibatch
    x, _ = minibatch(png, DataOrder(20, 0, True), 8, 32, torch.device("cpu"))
    assert x.shape == (8, 3, 32, 32)
    data = (tmp_path / "png" / "level-0032.png").read_bytes()
    (tmp_path / "png" / "level-0032.png").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert any("level-0032.png: checksum mismatch" in p for p in verify_dataset(str(tmp_path / "png")))
    r = CliRunner().invoke(main, ["dataset", "create", "builtin:shapes", str(tmp_path / "x"), "--resolution", "16",
                                  "--compress-from", "48"])
    assert r.exit_code == 1 and "--compress-from" in r.output


def test_builtin_shape_kinds_and_rounded_morphs():
    from pggan.data.builtin import SHAPE_KINDS, render_shape, shape_kind

    kinds = [shape_kind(0, i) for i in range(300)]
    assert set(kinds) == set(range(len(SHAPE_KINDS))) and all(60 < kinds.count(k) < 140 for k in range(3))
    disc, square = kinds.index(0), kinds.index(1)
    for i in (disc, square):
        assert np.array_equal(render_shape(0, i, 32), render_shape(0, i, 32, rounding=0.0))
    # rounding a square's corners changes its silhouette; a disc has no corners to round
    changed = [np.abs(render_shape(0, i, 32, rounding=0.5).astype(int) - render_shape(0, i, 32)).max()
               for i in (disc, square)]
    assert changed[0] <= 2 and changed[1] > 50


def test_builtin_shapes_are_labelled_with_their_shape(tmp_path):
    from pggan.data.builtin import SHAPE_KINDS, shape_kind
    from pggan.data.load import load_images

    images = load_images("builtin:shapes", 16, 3, 30, seed=5)
    assert images.label_size == 3 and images.labels.tolist() == [shape_kind(5, i) for i in range(30)]
    create_dataset(open_source("builtin:shapes", count=30, resolution=16, seed=5), str(tmp_path / "ds"),
                   ConvertOptions(resolution=16).validate())
    ds = open_dataset(str(tmp_path / "ds"))
    assert ds.labels.tolist() == images.labels.tolist()
    assert json.load(open(tmp_path / "ds" / "dataset.json"))["label_names"] == list(SHAPE_KINDS)


def test_real_grids_show_a_seeded_random_sample_in_data_order():
    """reals.png and `dataset show` draw their images at random (a folder sorted by name starts with
    look-alikes), the same ones for the same seed."""
    from pggan.util.grids import sample_indices

    assert sample_indices(10, 64, 0).tolist() == list(range(10))        # fewer images than the grid: all
    idx = sample_indices(4000, 64, 0)
    assert len(set(idx.tolist())) == 64 and (np.diff(idx) > 0).all() and idx[-1] > 1000
    assert (idx == sample_indices(4000, 64, 0)).all() and not (idx == sample_indices(4000, 64, 1)).all()
