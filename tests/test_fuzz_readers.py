"""Fuzzing every file reader: random bytes, truncations, byte flips of valid files, empty files, text,
other formats (and a code-running pickle) under the right name. Each case either reads (a flipped
weight is still a weight) or fails with one line of pggan's own error, which the command line prints
as is; never another exception, never code run from the file."""
import io
import os
import pickle
import shutil
import struct
import tempfile
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_official import tf_pickle, tf_variables

from pggan.api import load_generator
from pggan.checkpoint import save_checkpoint, save_generator
from pggan.config import TrainConfig
from pggan.data.create import ConvertOptions, create_dataset
from pggan.data.dataset import open_dataset, verify_dataset
from pggan.data.sources import open_source
from pggan.networks import Generator
from pggan.official.convert import convert_file
from pggan.util.errors import PgganError

EXAMPLES = int(os.environ.get("PGGAN_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(tempfile.gettempdir(), "pggan-fuzz-pwned"),))


def _png_bytes(size=8):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")
    return buf.getvalue()


OTHER_FORMATS = [b"", b"root:x:0:0:root:/root:/bin/bash\n", b"{}", b'{"format": "pggan-dataset", "version": 1}',
                 _png_bytes(), _zip_bytes(), pickle.dumps(Evil()), pickle.dumps({"a": 1}), os.urandom(64)]


@st.composite
def mutations(draw):
    kind = draw(st.sampled_from(["truncate", "flip", "flip", "random", "other"]))
    if kind == "truncate":
        return kind, draw(st.floats(0, 1, exclude_max=True))
    if kind == "flip":
        return kind, draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8))
    if kind == "random":
        return kind, draw(st.binary(min_size=0, max_size=512))
    return kind, draw(st.sampled_from(range(len(OTHER_FORMATS))))


def mutate(data: bytes, m) -> bytes:
    kind, arg = m
    if kind == "truncate":
        return data[: int(arg * len(data))]
    if kind == "flip":
        b = bytearray(data)
        for pos, x in arg:
            if b:
                b[int(pos * len(b))] ^= x
        return bytes(b)
    return arg if kind == "random" else OTHER_FORMATS[arg]


def one_line_or_ok(read) -> None:
    marker = os.path.join(tempfile.gettempdir(), "pggan-fuzz-pwned")
    try:
        read()
    except PgganError as e:
        msg = str(e).strip()
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
    assert not os.path.exists(marker), "code in the file was executed"


def _fuzz_file(tmp, name: str, valid: dict, read, m) -> None:
    """Copy the valid files to a fresh folder, replace ``name`` by its mutation, read."""
    folder = tempfile.mkdtemp(dir=tmp)
    for n, data in valid.items():
        os.makedirs(os.path.dirname(os.path.join(folder, n)), exist_ok=True)
        with open(os.path.join(folder, n), "wb") as f:
            f.write(mutate(data, m) if n == name else data)
    try:
        one_line_or_ok(lambda: read(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _tiny_net():
    cfg = TrainConfig()
    cfg.net.resolution, cfg.net.fmap_base, cfg.net.fmap_max, cfg.net.latent_size = 8, 16, 8, 8
    return cfg, Generator(cfg.net)


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("valid")
    cfg, G = _tiny_net()
    files = {}
    save_checkpoint(str(tmp / "c.pt"), {"G": G.state_dict(), "G_ema": G.state_dict(), "cur_nimg": 0,
                                        "config": cfg.to_json()})
    save_generator(str(tmp / "g.safetensors"), G, cfg.net, {"kimg": 1.0})
    files["checkpoint"] = {"c.pt": (tmp / "c.pt").read_bytes()}
    files["generator"] = {"g.safetensors": (tmp / "g.safetensors").read_bytes()}
    img = tmp / "imgs"
    img.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(img / f"{i}.png")
    for name, compress in (("ds", 0), ("dsz", 8)):
        create_dataset(open_source(str(img), "auto"), str(tmp / name), ConvertOptions(resolution=16, workers=1,
                                                                                       compress_from=compress), progress=False)
        files[name] = {n: (tmp / name / n).read_bytes() for n in os.listdir(tmp / name)}
    files["official"] = {"net.pkl": open(tf_pickle(tmp / "net.pkl", *tf_variables()), "rb").read()}
    rng = np.random.default_rng(0)

    def idx(arr):
        return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    files["mnist"] = {"train-images-idx3-ubyte": idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
                      "train-labels-idx1-ubyte": idx(np.array([1, 2, 3], np.uint8))}
    batch = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2], b"batch_label": b"x"}
    files["cifar"] = {f"cifar-10-batches-py/data_batch_{i}": pickle.dumps(batch, protocol=2) for i in range(1, 6)}
    files["cifar"]["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"c"] * 10})
    try:
        import lmdb
        env = lmdb.open(str(tmp / "bedroom_train_lmdb"), map_size=1 << 20)
        with env.begin(write=True) as txn:
            for i in range(3):
                txn.put(f"k{i}".encode(), _png_bytes(32))
        env.close()
        files["lsun"] = {f"bedroom_train_lmdb/{n}": (tmp / "bedroom_train_lmdb" / n).read_bytes()
                         for n in os.listdir(tmp / "bedroom_train_lmdb")}
    except ImportError:
        pass
    return files


def _read_dataset(folder):
    ds = open_dataset(folder)
    for r in ds.levels:
        np.asarray(ds.levels[r][:])
    verify_dataset(folder, deep=True)


def _convert(folder, kind, sub=""):
    src = open_source(os.path.join(folder, sub), kind)
    create_dataset(src, os.path.join(folder, "out"), ConvertOptions(resolution=32, workers=1), progress=False)


READERS = {
    "checkpoint": ("c.pt", lambda f: load_generator(os.path.join(f, "c.pt"))),
    "generator": ("g.safetensors", lambda f: load_generator(os.path.join(f, "g.safetensors"))),
    "dataset header": ("dataset.json", _read_dataset, "ds"),
    "dataset level": ("level-0008.u8", _read_dataset, "ds"),
    "dataset PNG level": ("level-0016.png", _read_dataset, "dsz"),
    "dataset PNG index": ("level-0016.idx", _read_dataset, "dsz"),
    "official pickle": ("net.pkl", lambda f: convert_file(os.path.join(f, "net.pkl"), os.path.join(f, "out.pt")), "official"),
    "mnist images": ("train-images-idx3-ubyte", lambda f: _convert(f, "mnist"), "mnist"),
    "mnist labels": ("train-labels-idx1-ubyte", lambda f: _convert(f, "mnist"), "mnist"),
    "cifar batch": ("cifar-10-batches-py/data_batch_2", lambda f: _convert(f, "cifar10", "cifar-10-batches-py"), "cifar"),
    "cifar meta": ("cifar-10-batches-py/batches.meta", lambda f: _convert(f, "cifar10", "cifar-10-batches-py"), "cifar"),
    "lsun lmdb": ("bedroom_train_lmdb/data.mdb", lambda f: _convert(f, "lsun", "bedroom_train_lmdb"), "lsun"),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_fuzzed_files_fail_with_one_line(reader, valid_files, tmp_path):
    name, read, *group = READERS[reader]
    group = group[0] if group else reader
    if group not in valid_files:
        pytest.skip(f"{group}: its package is not installed")
    valid = valid_files[group]
    read_valid(valid, read, tmp_path)

    @FUZZ
    @given(mutations())
    def fuzz(m):
        _fuzz_file(str(tmp_path), name, valid, read, m)

    fuzz()


def read_valid(valid, read, tmp_path):
    """The unmutated files read without any error (so the fuzzing starts from a file that works)."""
    folder = tempfile.mkdtemp(dir=tmp_path)
    for n, data in valid.items():
        os.makedirs(os.path.dirname(os.path.join(folder, n)), exist_ok=True)
        with open(os.path.join(folder, n), "wb") as f:
            f.write(data)
    read(folder)
    shutil.rmtree(folder)


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    torch.save({"x": 1}, tmp_path / "plain.pt")
    path = tmp_path / "evil.pt"          # the same archive with its pickle replaced by one that runs code
    with zipfile.ZipFile(tmp_path / "plain.pt") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = pickle.dumps(Evil()) if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename.replace("plain/", "evil/"), data)
    with pytest.raises(PgganError):
        load_generator(str(path))
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(PgganError):
        load_generator(str(path))
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), "pggan-fuzz-pwned"))
