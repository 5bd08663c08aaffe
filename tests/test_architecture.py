"""The package's shape: no import cycle between hyperlab's modules, no function over
~80 lines, imports at module top (where a comment does not say why not)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hyperlab"
#: the longest function the library allows (lines, signature and docstring included)
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> hyperlab modules it imports, at module level or inside a function (a
    function-level import is a dependency too: it only hides a cycle until the call). An
    import of ``pkg.mod`` counts as an import of that module, not of ``pkg``'s __init__."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for a in node.names:
                    full = f"{base}.{a.name}"
                    deps.add(full if full in mods else base)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_no_import_cycle_between_hyperlab_modules():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _functions():
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def test_no_function_is_longer_than_the_limit():
    long = [f"{p.relative_to(SRC)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p, n in _functions()
            if (n.end_lineno or n.lineno) - n.lineno + 1 > MAX_FUNCTION_LINES]  # fmt: skip
    assert not long, "split these into their phases:\n" + "\n".join(long)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_are_at_module_top_unless_a_comment_says_why(path):
    lines = path.read_text().splitlines()
    late = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    line = lines[inner.lineno - 1]
                    if "#" not in line:
                        late.append(f"{inner.lineno}: {line.strip()}")
    assert not late, "imports inside functions need a comment saying why (optional dependency, " \
                     "import cost):\n" + "\n".join(late)  # fmt: skip


def test_the_type_checker_sees_a_wrong_config_field(tmp_path):
    """RunContext is generic over the config: a figure module reading a field its config does
    not have is a type error (mypy, with the project's settings, as `make lint` runs it)."""
    mypy = pytest.importorskip("mypy.api", reason="mypy is in the dev extra")
    ok = (
        "from hyperlab.experiments.base import RunContext\n"
        "from hyperlab.experiments.modularity.rotation import RotationConfig\n\n\n"
        "def depths(ctx: RunContext[RotationConfig]) -> list[int]:\n"
        "    return ctx.config.depths\n"
    )
    bad = ok.replace("ctx.config.depths", "ctx.config.depth")
    config = str(SRC.parents[1] / "pyproject.toml")
    for text, clean in ((ok, True), (bad, False)):
        f = tmp_path / "figure.py"
        f.write_text(text)
        out, _, status = mypy.run(["--config-file", config, "--no-incremental", str(f)])
        assert (status == 0) == clean, out
    assert '"RotationConfig" has no attribute "depth"' in out
