"""The tensors of a TorchScript archive (a zip of ``<name>/data.pkl``, ``<name>/data/N`` and ``code/``), read
without executing anything of it.

``torch.jit.load`` would compile and run the archive's code; here its pickle is read by an unpickler
that knows only what a saved module's state is made of (module objects, tensors rebuilt from the
archive's raw storages, ordered dicts, int lists) and refuses every other global, so a file can only
ever give tensors and plain values. The result is the module tree's tensors by dotted attribute path,
as ``module.state_dict()`` names them.
"""
from __future__ import annotations

import collections
import pickle
import zipfile

import torch

STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                  "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                  "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                  "BoolStorage": torch.bool}


class ScriptArchiveError(ValueError):
    """Not a TorchScript archive, or one holding something other than module state."""


class _Module:
    """A scripted module's saved attributes (never its code)."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {})


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), offset)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        import io
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__."):
            return _Module
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        raise ScriptArchiveError(f"it holds '{module}.{name}', which is not module state (not loaded: that could run code)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise ScriptArchiveError(f"unknown persistent id {pid!r:.80}")
        _, dtype, key, _location, numel = pid
        raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise ScriptArchiveError(f"storage {key} has {flat.numel()} values, its record {numel}")
        return flat


def read_script_tensors(path: str) -> dict[str, torch.Tensor]:
    """{'net.layers.conv.weight': tensor, ...}: every tensor attribute of the archive's module tree."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkls = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1 or not any("/code/" in n for n in archive.namelist()):
                raise ScriptArchiveError("it is not a TorchScript archive (no <name>/data.pkl beside code/)")
            prefix = pkls[0].split("/")[0]
            root = _Unpickler(archive.read(pkls[0]), archive, prefix).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise ScriptArchiveError(f"it is not a readable TorchScript archive ({type(e).__name__}: {e})") from None
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return out


def is_script_archive(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/data.pkl") for n in names) and any("/code/" in n for n in names)


def _collect(obj, prefix: str, out: dict) -> None:
    for key, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _Module):
            _collect(value, f"{prefix}{key}.", out)
