"""The layer rule, read from every module's imports (ast, so lazy imports inside functions count too).

- ``core`` never imports ``daemon``;
- inside ``daemon`` the layers go commands -> service -> intake / processing / outputs -> state / config
  -> core: a module imports from its own subpackage and from layers below, never from a layer above
  nor from a peer of its own layer (so processing never imports outputs, intake never outputs);
- ``daemon/version.py`` and ``daemon/__init__.py`` sit at the bottom of the daemon (any layer may use them);
- no import cycle between modules of ``core.movie_io``.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DAEMON_LAYERS = {"commands": 4, "service": 3, "intake": 2, "processing": 2, "outputs": 2, "state": 1, "config": 1}
DAEMON_BASE = 0  # framewatch.daemon itself and framewatch.daemon.version


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("framewatch", *parts))


def imports_of(path: Path) -> set[str]:
    """Every ``framewatch.*`` name the module imports (``from a import b`` gives ``a`` and ``a.b``)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in out if n.startswith("framewatch.")}


def all_modules() -> dict[str, set[str]]:
    files = [*ROOT.glob("core/**/*.py"), *ROOT.glob("daemon/**/*.py")]
    return {module_name(f): imports_of(f) for f in files}


def daemon_layer(name: str) -> tuple[str, int] | None:
    """(subpackage, rank) of a ``framewatch.daemon`` module; None outside the daemon."""
    parts = name.split(".")
    if parts[:2] != ["framewatch", "daemon"]:
        return None
    if len(parts) == 2 or parts[2] not in DAEMON_LAYERS:
        return ("", DAEMON_BASE)
    return (parts[2], DAEMON_LAYERS[parts[2]])


def layer_violations(modules: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, names in sorted(modules.items()):
        for name in sorted(names):
            if mod.startswith("framewatch.core") and name.startswith("framewatch.daemon"):
                bad.append(f"{mod} -> {name} (core never imports daemon)")
                continue
            src, dst = daemon_layer(mod), daemon_layer(name)
            if src is None or dst is None or src[0] == dst[0]:
                continue
            if dst[1] >= src[1] and dst[1] != DAEMON_BASE:
                bad.append(f"{mod} -> {name} ({src[0]} may not import {dst[0]})")
    return bad


def test_every_package_module_is_scanned():
    modules = all_modules()
    assert "framewatch.core.correct" in modules and "framewatch.daemon.service.daemon" in modules
    assert len(modules) > 100


def test_layer_rule_holds():
    assert layer_violations(all_modules()) == []


def test_layer_rule_catches_violations():
    """The checker itself: each forbidden direction is reported, allowed ones are not."""
    fake = {
        "framewatch.core.x": {"framewatch.daemon.state.journal"},
        "framewatch.daemon.processing.a": {"framewatch.daemon.outputs.stack", "framewatch.daemon.state.journal"},
        "framewatch.daemon.intake.b": {"framewatch.daemon.outputs.stack", "framewatch.daemon.intake.naming"},
        "framewatch.daemon.config.c": {"framewatch.daemon.service.metrics", "framewatch.core.errors"},
        "framewatch.daemon.service.d": {"framewatch.daemon.commands.cli", "framewatch.daemon.version"},
        "framewatch.daemon.commands.e": {"framewatch.daemon.service.daemon", "framewatch.daemon.config.configuration"},
    }
    assert [b.split(" (")[0] for b in layer_violations(fake)] == [
        "framewatch.core.x -> framewatch.daemon.state.journal",
        "framewatch.daemon.config.c -> framewatch.daemon.service.metrics",
        "framewatch.daemon.intake.b -> framewatch.daemon.outputs.stack",
        "framewatch.daemon.processing.a -> framewatch.daemon.outputs.stack",
        "framewatch.daemon.service.d -> framewatch.daemon.commands.cli",
    ]


def test_relative_imports_resolve():
    f = ROOT / "core" / "correct.py"
    names = imports_of(f)
    assert not any(n.startswith("framewatch..") for n in names)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_in_movie_io():
    modules = all_modules()
    pkg = "framewatch.core.movie_io"
    inside = {m for m in modules if m == pkg or m.startswith(pkg + ".")}
    graph = {m: {n for n in modules[m] if n in inside and n != m} for m in inside}
    assert _cycles(graph) == []
