"""The layers of docs/architecture.md: a module imports only from its own layer or the ones below,
and no two modules import each other (imports inside functions count too)."""
import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"

# (module or package prefix, layer): the longest matching prefix decides a module's layer
LAYERS = [
    ("pggan.util", 0),
    ("pggan.config", 1),
    ("pggan.schedule", 2), ("pggan.presets", 2), ("pggan.classes", 2),
    ("pggan.conv", 3), ("pggan.layers", 3), ("pggan.networks", 3), ("pggan.losses", 3), ("pggan.flops", 3),
    ("pggan.checkpoint", 3), ("pggan.video", 3), ("pggan.augment", 3),
    ("pggan.data.base", 3), ("pggan.data.builtin", 4), ("pggan.data.sources", 5), ("pggan.data.dataset", 5),
    ("pggan.data.create", 6), ("pggan.data.load", 7), ("pggan.data", 7),
    ("pggan.api", 8), ("pggan.official", 8),
    ("pggan.metrics", 9), ("pggan.metrics.msssim", 3), ("pggan.metrics.inception", 3), ("pggan.metrics.base", 3),
    ("pggan.project", 7),
    ("pggan.explore", 10), ("pggan.export", 10), ("pggan.plot", 10),
    ("pggan.training", 11),
    ("pggan.bench", 12), ("pggan.serve", 12),
    ("pggan.cli", 13), ("pggan.__main__", 13), ("pggan", 13),
]


def modules() -> dict:
    out = {}
    for path in (SRC / "pggan").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: pathlib.Path, known) -> set:
    """pggan modules that ``name`` imports anywhere in its file."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = name.split(".") if is_pkg else name.split(".")[:-1]
            base = parts[:len(parts) - node.level + 1] if node.level else []
            pre = ".".join(base + ([node.module] if node.module else []))
            found.add(pre)
            found.update(f"{pre}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def prefix_of(name: str) -> str:
    return max((p for p, _ in LAYERS if name == p or name.startswith(p + ".")), key=len)


def layer(name: str) -> int:
    return dict(LAYERS)[prefix_of(name)]


def test_every_module_is_placed_in_a_layer():
    """A new top-level module must be given its layer here (and in docs/architecture.md)."""
    unplaced = [m for m in modules() if prefix_of(m) == "pggan" and m != "pggan"]
    assert not unplaced, f"add to LAYERS: {unplaced}"


def test_imports_go_down_only():
    mods = modules()
    wrong = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
             for m, p in mods.items() for t in sorted(imports(m, p, mods)) if layer(t) > layer(m)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    mods = modules()
    edges = {m: imports(m, p, mods) for m, p in mods.items()}
    state: dict = {}

    def visit(m, stack):
        state[m] = "open"
        for t in edges[m]:
            if state.get(t) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [m, t]))
            if t not in state:
                visit(t, stack + [m])
        state[m] = "done"

    for m in mods:
        if m not in state:
            visit(m, [])


def test_the_checks_catch_an_upward_import(tmp_path):
    """The test fails where it should: a layer-0 helper importing the trainer is found."""
    bad = tmp_path / "pggan" / "util" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..training.trainer import Trainer\n")
    mods = modules() | {"pggan.util.bad": bad}
    assert imports("pggan.util.bad", bad, mods) == {"pggan.training.trainer", "pggan.training.trainer.Trainer"} & set(mods)
    assert layer("pggan.training.trainer") > layer("pggan.util.bad")
