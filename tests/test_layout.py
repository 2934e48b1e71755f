"""The tree's shape: stages import downwards only, no import cycles (imports inside functions
count too), and no module with logic loose at the top of data/."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("plumbing", "data", "models", "evaluation", "export", "kernel")
ENTRY_POINTS = ("train", "evaluate")
# A stage may import its own floor and those below it; export and evaluation stand side by side.
FLOOR = {"plumbing": 0, "data": 1, "models": 2, "evaluation": 3, "export": 3, "kernel": 4, "train": 5, "evaluate": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    files += [REPO / f"{name}.py" for name in ENTRY_POINTS]
    return {module_name(p): p for p in files}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules that `path` imports anywhere in it (module level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import a.b.c` of a non-module attribute path
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_cycle_detector_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stages_import_downwards_only():
    upward = [
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if FLOOR[b.split(".")[0]] > FLOOR[a.split(".")[0]]
        or (FLOOR[b.split(".")[0]] == FLOOR[a.split(".")[0]] and a.split(".")[0] != b.split(".")[0])
    ]
    assert upward == []


def test_no_module_with_logic_loose_at_the_top_of_data():
    loose = {p.name for p in (REPO / "data").glob("*.py")}
    assert loose <= {"__init__.py", "build.py"}
    shim = (REPO / "data" / "build.py").read_text()
    assert len(shim.splitlines()) <= 10 and "from data.dataset.build import main" in shim


# Inside data/: what each stage package may import from the others.
DATA_STAGES = {
    "data.parse": set(),
    "data.can_migrate": set(),
    "data.collect": {"data.can_migrate"},
    "data.dataset": {"data.parse", "data.can_migrate", "data.collect"},  # it reads the collectors' runs
}


def test_data_stages_import_only_what_they_stand_on():
    def stage(name):
        return next((s for s in DATA_STAGES if name == s or name.startswith(s + ".")), None)

    crossing = [
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if stage(a) and stage(b) and stage(a) != stage(b) and stage(b) not in DATA_STAGES[stage(a)]
    ]
    assert crossing == []
