"""The layering of ``arft_envs``: it imports without torch, its modules import each other without
a circle, tools never reach up into the task layer, and nothing imports the trainers.

The import graph is read from the source (``ast``), not by importing, so a circle is found
even where today's import order happens to hide it. Imports under ``if TYPE_CHECKING:`` never
run and never count. Only imports that run when a module is loaded count towards a circle
(imports inside functions are lazy on purpose); for the layering rules every import that can
run counts, lazy ones too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import arft_envs

PACKAGE = Path(arft_envs.__file__).resolve().parent
HEAVY = ("torch", "transformers", "sentence_transformers")


def _modules() -> dict[str, Path]:
    """Every module of ``arft_envs`` by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, load_time_only: bool) -> set[str]:
    """The names module ``name`` imports; see :func:`_imports_in`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports_in(path.read_text(encoding="utf-8"), package, load_time_only)


def _imports_in(source: str, package: str, load_time_only: bool) -> set[str]:
    """The names a module of ``package`` with this ``source`` imports: modules of
    ``arft_envs`` where they resolve to one (``from pkg import sub`` counts as ``pkg.sub``),
    else the name as written."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not load_time_only:
                    visit(node.body)
            elif isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])

    visit(ast.parse(source).body)
    return found


def _load_time_graph() -> dict[str, set[str]]:
    return {name: _imports(name, True) & set(MODULES) for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path that ends where it starts, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_graph_reader_sees_the_imports_it_must():
    graph = _load_time_graph()
    # absolute, relative and "from package import module" forms all resolve
    assert "arft_envs.errors" in graph["arft_envs.tasks.base"]
    assert "arft_envs.tasks.coding.export" in graph["arft_envs.tasks.coding.synthetic"]
    # a lazy import inside a function does not count towards a circle
    assert "arft_envs.tasks.render" not in graph["arft_envs.tasks.search.clues"]
    assert "arft_envs.tasks.render" in _imports("arft_envs.tasks.search.clues", False)
    # a type-only import never runs, so it is no import at all; relative imports resolve
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import world\n"
        "from ..base import Task\n"
        "if TYPE_CHECKING:\n"
        "    from arft_envs.core import AgenticEnv\n"
        "def f():\n"
        "    import arft_envs.tasks.render\n"
    )
    package = "arft_envs.tasks.search"
    assert _imports_in(source, package, True) == {
        "typing",
        "arft_envs.tasks.search.world",
        "arft_envs.tasks.base",
    }
    assert "arft_envs.tasks.render" in _imports_in(source, package, False)
    assert "arft_envs.core" not in _imports_in(source, package, False)
    # and the circle finder finds one
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    circle = _cycle(_load_time_graph())
    assert circle is None, (
        "import circle: "
        + " -> ".join(circle)
        + "; move the shared name down a layer, or import it inside the function that needs it"
    )


def test_tools_never_import_the_task_layer():
    offenders = {
        name: sorted(m for m in _imports(name, False) if m.startswith("arft_envs.tasks"))
        for name in MODULES
        if name.startswith("arft_envs.tools")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, (
        f"tools import tasks (shared errors live in arft_envs.errors): {offenders}"
    )


def test_arft_envs_never_imports_the_trainers():
    offenders = {
        name: sorted(m for m in _imports(name, False) if m.split(".")[0] == "agents")
        for name in MODULES
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"arft_envs imports agents: {offenders}"


def _extra_missing(extra: str) -> bool:
    """Whether ``arft[extra]`` is not in effect in this environment: a requirement of the
    extra that applies to this Python is not installed, or none applies (``verifiers`` needs
    Python 3.11+)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    applying = []
    for line in metadata.requires("arft") or ():
        req = Requirement(line)
        if req.marker is not None and req.marker.evaluate({"extra": extra}):
            if not req.marker.evaluate({"extra": ""}):  # the extra's own, not a core one
                applying.append(req.name)
    if not applying:
        return True
    try:
        for name in applying:
            metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return True
    return False


def test_extra_detection_reads_the_packages_own_requirements():
    from importlib import metadata

    assert not _extra_missing("dev")  # pytest, which runs this test, comes with it
    assert _extra_missing("no-such-extra")
    assert any("extra ==" in r for r in metadata.requires("arft") or ())


def test_importing_arft_envs_and_its_modules_pulls_no_torch():
    """Every module imports without pulling torch. A module that needs an optional extra
    (an integration) and raises its ``pip install 'arft[extra]'`` ImportError is left out only
    where that extra is not installed, and then its own imports are checked from the source;
    where the extra is installed (CI installs them all) it is imported like the others."""
    # worker-side sandbox files run as scripts inside the sandbox, not as package modules
    names = [n for n in MODULES if not n.startswith("arft_envs.tools.sandbox.")]
    code = (
        "import importlib, json, re, sys\n"
        "import arft_envs\n"
        f"heavy = {HEAVY!r}\n"
        "assert not [m for m in heavy if m in sys.modules], 'import arft_envs pulled ' + str(heavy)\n"
        "needs = {}\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as err:\n"
        '        extra = re.search(r"pip install \'?arft\\[([\\w-]+)\\]", str(err))\n'
        "        if extra is None:\n"
        "            raise\n"
        "        needs[name] = extra[1]\n"
        "    pulled = [m for m in heavy if m in sys.modules]\n"
        "    assert not pulled, f'importing {name} pulled {pulled}'\n"
        "print(json.dumps(needs))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    needs = json.loads(done.stdout.splitlines()[-1])
    installed = {name: extra for name, extra in needs.items() if not _extra_missing(extra)}
    assert not installed, (
        f"these modules fail to import though their extra is installed: {installed}"
    )
    for name in needs:  # left out: their own imports, from the source
        heavy = sorted(m for m in _imports(name, True) if m.split(".")[0] in HEAVY)
        assert not heavy, f"{name} imports {heavy} when it is loaded"
