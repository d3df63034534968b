"""The house keeps its layers: no import circle among grokscope's modules (imports inside functions
counted), and nothing under llc/ imports the analyses."""

import ast
from pathlib import Path

import grokscope

PACKAGE = Path(grokscope.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module name -> the grokscope modules it imports, anywhere in its file."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["grokscope", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
                found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def _cycle(graph: dict[str, set[str]], within: str) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if not nxt.startswith(within):
                continue
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node.startswith(within) and node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_the_llc_package():
    assert _cycle(_imports(), "grokscope.llc") is None


def test_the_finder_sees_a_circle():
    assert _cycle({"grokscope.llc.a": {"grokscope.llc.b"}, "grokscope.llc.b": {"grokscope.llc.a"}}, "grokscope.llc")


def test_nothing_under_llc_imports_the_analyses_or_the_posterior_statistics():
    graph = _imports()
    upward = {name: sorted(t for t in targets if t.startswith(("grokscope.analysis", "grokscope.posterior")))
              for name, targets in graph.items() if name.startswith("grokscope.llc")}
    assert not {name: t for name, t in upward.items() if t}
