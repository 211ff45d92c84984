"""No import circle anywhere in pipelines/, and the score stage never reaches training (issue 27).

The graph is read from the source with `ast`, every import counted, those inside functions
too (a lazy import is still an edge: costly.py's lazy imports of the scorers that imported it
back made a circle of four modules). A circle is a strongly connected component of more than
one module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_graph(source_root: Path, package: str) -> dict[str, set[str]]:
    """{module: the modules of `package` it imports}, read from every .py file under source_root/package."""
    files = {}
    for path in (source_root / package).rglob("*.py"):
        parts = path.relative_to(source_root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[module] |= {alias.name for alias in node.names if alias.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # a relative import climbs from this module's package
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    target = f"{base}.{alias.name}"  # `from pkg import module`, else a name in pkg
                    if target in files or base in files:
                        graph[module].add(target if target in files else base)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start), on_stack.add(start)
        while work:
            node, edges = work[-1]
            for child in edges:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child), on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while not component or component[-1] != node:
                        component.append(stack.pop())
                        on_stack.discard(component[-1])
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_circle_anywhere_in_pipelines():
    assert circles(import_graph(ROOT, "pipelines")) == []


def reached_from(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    reached, todo = set(), list(starts)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    return reached


TRAINING = ["pipelines.train.trainer", "pipelines.train.loop", "pipelines.train.stage", "pipelines.train.warmup"]
BUILDERS = ["pipelines.models.less_warmup", "pipelines.models.scorer_warmups", "pipelines.models.stage"]


def test_the_score_stage_never_reaches_the_warm_ups_training():
    """The scorers read warm-ups by path (models/less_checkpoints.py, models/scorer_models.py);
    the models stage trains them (models/scorer_warmups.py)."""
    graph = import_graph(ROOT, "pipelines")
    score = [module for module in graph if module.startswith("pipelines.score")]
    reached = reached_from(graph, score)
    assert {"pipelines.models.less_checkpoints", "pipelines.models.scorer_models"} <= reached
    assert [module for module in TRAINING + BUILDERS if module in reached] == []
    assert {"pipelines.train.warmup", "pipelines.models.less_warmup"} <= reached_from(graph, BUILDERS[1:2])
    assert "pipelines.models.scorer_warmups" in graph["pipelines.models.stage"]
    # nothing in score/ imports the train stage's running parts (it reads settings, masking, checkpoints)
    direct = {target for module in score for target in graph[module] if target.startswith("pipelines.train")}
    assert direct.isdisjoint(TRAINING + ["pipelines.train.data"])


def test_a_lazy_import_back_up_is_found_as_a_circle(tmp_path):
    """The check itself: the shape score/ had (a builder importing scorers lazily, which import it)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "builder.py").write_text("def build():\n    from pkg import scorer\n")
    (package / "scorer.py").write_text("from pkg import builder, shared\n")
    (package / "other.py").write_text("from .shared import draw\n")
    (package / "shared.py").write_text("import hashlib\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.other"] == {"pkg.shared"}  # a relative import is an edge too
    assert circles(graph) == [["pkg.builder", "pkg.scorer"]]
