"""Every cross-reference in ckptd's docstrings and comments names something that exists.

The references are Sphinx roles (``:mod:`ckptd.store.admin```,
``:class:`~ckptd.worker.job.AsyncJob```, ``:func:``, ``:meth:``, ``:attr:``, ``:data:``,
``:exc:``) and are looked up the way Sphinx
would, by importing: a dotted name from ``ckptd`` is imported and walked; a short name is
looked for in the class the reference is written in (its attributes, including those it
sets in ``__init__`` or declares), then in the module (its names and its imports, those
under ``TYPE_CHECKING`` too), then in ``ckptd`` itself. A reference that names a module or
an object that no longer exists (after a move or a rename) fails here, with where it is.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ckptd"
ROLE = re.compile(r":(mod|class|func|meth|attr|data|exc|obj|const):`([^`]+)`")


@dataclass(frozen=True)
class Reference:
    """One role in one module, with the class it is written in (if any)."""

    module: str
    line: int
    role: str
    target: str
    in_class: tuple[str, ...]  # the nesting of classes around it, outermost first

    def __str__(self) -> str:
        path = self.module.replace(".", "/") + ".py"
        return f"{path}:{self.line}: :{self.role}:`{self.target}`"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _classes_around(tree: ast.Module) -> list[tuple[int, int, tuple[str, ...]]]:
    """(first line, last line, class nesting) of every class of the module."""
    found = []

    def visit(node: ast.AST, outer: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                nesting = (*outer, child.name)
                found.append((child.lineno, child.end_lineno or child.lineno, nesting))
                visit(child, nesting)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, outer)

    visit(tree, ())
    return found


def references() -> list[Reference]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        classes = _classes_around(ast.parse(text))
        for number, line in enumerate(text.splitlines(), 1):
            for match in ROLE.finditer(line):
                around = [c for c in classes if c[0] <= number <= c[1]]
                nesting = max(around, key=lambda c: c[0])[2] if around else ()
                found.append(Reference(_module_name(path), number, match.group(1),
                                       match.group(2), nesting))
    return found


def _imports(module: ModuleType) -> dict[str, str]:
    """Every name the module imports, anywhere in it (functions, TYPE_CHECKING), to its
    full dotted name."""
    names: dict[str, str] = {}
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    names.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(name: str) -> object | None:
    """The object at a full dotted name (a module, or attributes below one), or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return _walk(found, parts[cut:])
    return None


def _walk(found: object, rest: list[str]) -> object | None:
    for part in rest:
        if hasattr(found, part):
            found = getattr(found, part)
        elif isinstance(found, type) and part in _instance_attributes(found):
            return _MEMBER  # an attribute of its instances: nothing deeper to look up
        elif isinstance(found, ModuleType):  # a submodule not imported yet
            try:
                found = importlib.import_module(f"{found.__name__}.{part}")
            except ImportError:
                return None
        else:
            return None
    return found


_MEMBER = object()


def _instance_attributes(cls: type) -> set[str]:
    """Attributes its instances have that the class itself may not: declared (annotations,
    dataclass fields, slots) or set as ``self.NAME`` in its code, through its bases."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names.update(getattr(klass, "__annotations__", {}))
        slots = klass.__dict__.get("__slots__", ())
        names.update([slots] if isinstance(slots, str) else slots)
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names.update(re.findall(r"\bself\.(\w+)\s*(?::[^=\n]+)?=(?!=)", source))
    return names


def resolve(ref: Reference) -> object | None:
    titled = re.fullmatch(r"[^<]*<(.+)>", ref.target)  # :meth:`a title <the.target>`
    target = (titled.group(1) if titled else ref.target).lstrip("~").lstrip(".")
    module = importlib.import_module(ref.module)
    if target.startswith("ckptd.") or target == "ckptd":
        return _dotted(target)
    first, *rest = target.split(".")
    scopes: list[object] = []
    owner: object = module
    for name in ref.in_class:  # the innermost class first
        owner = getattr(owner, name, None)
        if owner is None:  # a class defined inside a function
            break
        scopes.insert(0, owner)
    for scope in scopes:
        if isinstance(scope, type) and (hasattr(scope, first)
                                        or first in _instance_attributes(scope)):
            return _walk(scope, [first, *rest])
    if hasattr(module, first):
        return _walk(module, [first, *rest])
    imported = _imports(module)
    if first in imported:
        return _dotted(".".join([imported[first], *rest]))
    ckptd = importlib.import_module("ckptd")
    if first in getattr(ckptd, "__all__", ()):
        return _walk(ckptd, [first, *rest])
    return None


def _kind_fits(ref: Reference, found: object) -> bool:
    if ref.role == "mod":
        return isinstance(found, ModuleType)
    if ref.role in ("class", "exc"):
        return isinstance(found, type) or found is _MEMBER  # a Protocol, alias or type var
    return True


REFERENCES = references()


def test_there_are_references_to_check() -> None:
    assert len(REFERENCES) > 200, len(REFERENCES)


@pytest.mark.parametrize("module", sorted({ref.module for ref in REFERENCES}))
def test_every_docstring_reference_resolves(module: str) -> None:
    broken = []
    for ref in REFERENCES:
        if ref.module != module:
            continue
        found = resolve(ref)
        if found is None or not _kind_fits(ref, found):
            broken.append(str(ref))
    assert not broken, "references to nothing (moved or renamed?):\n" + "\n".join(broken)


def test_the_lookup_finds_a_moved_name() -> None:
    """The negative control: the names of before the moves are not found."""
    here = Reference("ckptd.daemon.daemon", 1, "class", "ckptd.metrics.Snapshot", ())
    assert resolve(here) is None
    assert resolve(Reference("ckptd.daemon.daemon", 1, "mod", "ckptd.states", ())) is None
    now = Reference("ckptd.daemon.daemon", 1, "class",
                    "~ckptd.daemon.telemetry.snapshot.Snapshot", ())
    assert isinstance(resolve(now), type)
