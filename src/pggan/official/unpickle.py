"""A restricted unpickler for the released network pickles.

A pickle can name any importable callable and have it called while loading. The released files
need only the network class (mapped here to a plain stub that keeps its state and never executes
the ``build_module_src`` it carries) and numpy's array reconstruction; every other global is
refused before anything is called.
"""
from __future__ import annotations

import pickle

import numpy as np

from ..util.errors import PgganError, first_line


class OfficialPickleError(PgganError, ValueError):
    """A pickle that is not a released network, or one that asks for something we refuse."""


class TFNetwork:
    """Stand-in for ``tfutil.Network``: ``state`` = {version, name, static_kwargs, build_module_src,
    build_func_name, variables: [(name, ndarray), ...]}."""

    def __setstate__(self, state):
        self.state = state


class TheanoNetwork:
    """Stand-in for the Theano release's ``network.Network``: ``state`` = {build_func_spec,
    build_module_src, param_values: [ndarray, ...], toplevel_params: {name: ndarray}}."""

    def __setstate__(self, state):
        self.state = state


def _reconstructor(cls, base, state):
    """Protocol 0/1 object creation (copyreg._reconstructor) limited to the stubs above."""
    if cls not in (TFNetwork, TheanoNetwork) or base is not object:
        raise OfficialPickleError("the pickle builds an object that is not a released network")
    return object.__new__(cls)


def _encode(text, encoding="latin1"):
    """Python 2 byte strings in protocol 2 (``_codecs.encode``)."""
    return text.encode(encoding)


ALLOWED = {
    ("tfutil", "Network"): TFNetwork,
    ("network", "Network"): TheanoNetwork,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _encode,
    ("collections", "OrderedDict"): dict,
}


def _numpy_global(module: str, name: str):
    """numpy's array and scalar reconstruction (under numpy 1.x and 2.x module names), ndarray, dtype."""
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        try:
            from numpy._core import multiarray
        except ImportError:                     # numpy 1.x
            from numpy.core import multiarray
        return getattr(multiarray, name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        found = _numpy_global(module, name)
        if found is not None:
            return found
        raise OfficialPickleError(f"refused: the pickle asks for '{module}.{name}', which a released network never "
                                  f"contains; nothing in it was run. Only tfutil.Network / network.Network pickles "
                                  f"of numpy arrays are read")


def load_official(path: str):
    """The objects of a released pickle: a tuple (G, D, Gs) of stubs (or a single network)."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except OfficialPickleError:
        raise
    except FileNotFoundError:
        raise OfficialPickleError(f"'{path}' does not exist") from None
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged pickle stream fails in many ways, all meaning the same
        raise OfficialPickleError(f"'{path}' is not a readable network pickle (truncated or not a pickle?): "
                                  f"{type(e).__name__}: {first_line(e)}") from None
    nets = obj if isinstance(obj, tuple) else (obj,)
    if not nets or not all(isinstance(n, (TFNetwork, TheanoNetwork)) and isinstance(getattr(n, "state", None), dict)
                           for n in nets):
        raise OfficialPickleError(f"'{path}' does not hold released networks (expected a tuple of "
                                  f"tfutil.Network or network.Network objects)")
    return nets
