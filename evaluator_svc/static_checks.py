"""Text/AST stages run in the service process; candidate code is parsed, never executed here.

Safety policy (defence in depth; the sandbox is the real boundary):

* Imports: only modules whose top-level package is in ALLOWED_MODULES, or a RESTRICTED_MODULES entry,
  whose alias may then be used only as ``alias.<allowed attribute>`` (LEMUR models import ``gc`` for
  ``gc.collect()`` and often carry unused ``import os, sys``). ``from m import *`` only where nothing
  under ``m`` is denied.
* Dotted names under DENIED_PATHS (pickle loading, hub downloads, native extensions, file I/O, process
  spawning in torch/numpy) are rejected, however they are imported or aliased.
* Builtins in DENIED_BUILTINS (eval, exec, compile, __import__, open, globals, ...) may not be named.
* Attributes in DENIED_ATTRIBUTES (``__subclasses__``, ``__globals__``, frame and code objects, ...) may
  not be accessed, nor reached through getattr/setattr/delattr/hasattr with a dunder string; no string
  constant may contain a denied dunder name. getattr & co. with a computed name are allowed on ``self``
  only (LEMUR models name their own layers so); in the worker they refuse dunder and denied names at run
  time (`runtime_builtins`).
* Modules that libraries import themselves (``torch.os``, ``traceback.sys``, ``x.ctypes``: names in
  MODULE_ATTRIBUTES) may not be reached as attributes of anything.
* An imported module may be used only as the base of an attribute chain, renamed (``t = torch``), compared
  or as an annotation, never as a value (``(lambda m: m)(torch)``), and getattr & co. may only be called,
  not passed around, so that the dotted-name checks above see every use.
* Code nested too deeply for these checks fails at the SYNTAX stage.
"""

from __future__ import annotations

import ast
import builtins

from evaluator_svc.results import Stage

Failure = tuple[Stage, str]

ALLOWED_MODULES = frozenset({
    "torch", "torchvision", "numpy", "math", "cmath", "collections", "functools", "itertools", "typing",
    "typing_extensions", "dataclasses", "abc", "enum", "copy", "numbers", "operator", "random", "warnings",
    "traceback", "types", "__future__", "statistics", "fractions", "string", "re", "time", "einops",
})
RESTRICTED_MODULES: dict[str, frozenset[str]] = {
    "gc": frozenset({"collect"}),
    "os": frozenset(),
    "sys": frozenset(),
}
DENIED_PATHS = (
    "torch.load", "torch.save", "torch.hub", "torch.utils.cpp_extension", "torch.utils.model_zoo",
    "torch.ops.load_library", "torch.classes.load_library", "torch.library", "torch.distributed",
    "torch.multiprocessing", "torch.compile", "torch._dynamo",
    "torch._inductor", "torch.cuda.memory", "torch.backends.cudnn.benchmark_limit", "torch._C",
    "torchvision.datasets", "torchvision.io", "numpy.load", "numpy.save", "numpy.savez", "numpy.fromfile",
    "numpy.tofile", "numpy.memmap", "numpy.ctypeslib", "numpy.lib.format", "numpy.f2py", "numpy.distutils",
    "types.CodeType", "torch.jit.load", "torch.package", "torch.serialization", "torch.export.load",
    "torch.from_file", "numpy.lib.npyio", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromregex",
    "operator.attrgetter", "operator.methodcaller",
)
DENIED_BUILTINS = frozenset({
    "eval", "exec", "compile", "__import__", "open", "globals", "locals", "vars", "breakpoint",
    "__builtins__", "__loader__", "__spec__",
})
DENIED_ATTRIBUTES = frozenset({
    "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__mro__", "__bases__",
    "__base__", "__getattribute__", "__reduce__", "__reduce_ex__", "__import__", "__loader__", "__spec__",
    "__dict__", "__self__", "__func__", "f_globals", "f_locals", "f_builtins", "f_back", "f_code",
    "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "tb_frame", "tb_next", "co_code",
    "func_globals", "system", "popen", "tofile", "load_library",
})
DENIED_DUNDERS = frozenset(a for a in DENIED_ATTRIBUTES if a.startswith("__"))
MODULE_ATTRIBUTES = frozenset({
    "os", "sys", "ctypes", "subprocess", "socket", "importlib", "builtins", "io", "shutil", "pathlib", "pickle",
    "marshal", "multiprocessing", "inspect", "threading", "_thread", "posix", "mmap", "tempfile", "glob", "runpy",
    "pty", "fcntl", "resource", "gc", "sysconfig", "site", "urllib", "http", "zipimport",
})
REFLECTION_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
CONTRACT_METHODS = ("__init__", "train_setup", "learn", "forward")


def check_syntax(code: str) -> ast.Module | Failure:
    """Parse the candidate; the tree, or (SYNTAX, reason)."""
    try:
        return ast.parse(code, filename="<candidate>")
    except SyntaxError as exc:
        return Stage.SYNTAX, f"line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return Stage.SYNTAX, f"cannot parse: {type(exc).__name__}: {exc}"


def check_contract(tree: ast.Module) -> Failure | None:
    """Module-level supported_hyperparameters() and class Net with the LEMUR methods."""
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "supported_hyperparameters" not in functions:
        return Stage.CONTRACT, "missing module-level function supported_hyperparameters()"
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    if "Net" not in classes:
        return Stage.CONTRACT, "missing module-level class Net"
    methods = _methods(classes["Net"], classes, set())
    missing = [m for m in CONTRACT_METHODS if m not in methods]
    if missing:
        return Stage.CONTRACT, f"class Net lacks method(s): {', '.join(missing)}"
    init = methods["__init__"]
    if isinstance(init, ast.FunctionDef) and init.args.vararg is None and \
            len(init.args.args) + len(init.args.posonlyargs) < 5:
        return Stage.CONTRACT, "Net.__init__ must take (self, in_shape, out_shape, prm, device)"
    return None


def _methods(cls: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: set[str]) -> dict[str, ast.AST]:
    """Names defined in `cls` (defs and assignments), including those of base classes in this module."""
    seen.add(cls.name)
    found: dict[str, ast.AST] = {}
    for base in reversed(cls.bases):
        if isinstance(base, ast.Name) and base.id in classes and base.id not in seen:
            found.update(_methods(classes[base.id], classes, seen))
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            found.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
    return found


class _SafetyVisitor(ast.NodeVisitor):
    """Collects the first safety violation; tracks import aliases to resolve dotted names."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.modules: set[str] = set()  # local names bound to a module by `import` (or renamed from one)
        self.allowed_names: set[int] = set()  # ids of Name nodes in an allowed position (attribute base, ...)
        self.violation: str | None = None

    def fail(self, node: ast.AST, why: str) -> None:
        if self.violation is None:
            self.violation = f"line {getattr(node, 'lineno', '?')}: {why}"

    def _check_module(self, node: ast.AST, dotted: str) -> None:
        top = dotted.split(".")[0]
        if top not in ALLOWED_MODULES and top not in RESTRICTED_MODULES:
            self.fail(node, f"import of module {dotted!r} is not allowed")
        elif top in RESTRICTED_MODULES and "." in dotted:
            self.fail(node, f"import of {dotted!r} is not allowed")
        self._check_path(node, dotted)

    def _check_path(self, node: ast.AST, dotted: str) -> None:
        for denied in DENIED_PATHS:
            if dotted == denied or dotted.startswith(denied + "."):
                self.fail(node, f"use of {dotted!r} is not allowed")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            local = alias.asname or alias.name.split(".")[0]
            self.aliases[local] = alias.name if alias.asname else local
            self.modules.add(local)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.fail(node, "relative imports are not allowed")
            return
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            if module.split(".")[0] in RESTRICTED_MODULES or (alias.name == "*" and any(
                    denied.startswith(module + ".") for denied in DENIED_PATHS)):
                self.fail(node, f"'from {module} import {alias.name}' is not allowed")
            self._check_path(node, f"{module}.{alias.name}")
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"

    def visit_Assign(self, node: ast.Assign) -> None:
        dotted = self._dotted(node.value) if isinstance(node.value, ast.Name | ast.Attribute) else None
        if dotted:
            self.aliases.update({t.id: dotted for t in node.targets if isinstance(t, ast.Name)})
        if isinstance(node.value, ast.Name) and node.value.id in self.modules and \
                all(isinstance(t, ast.Name) for t in node.targets):
            self.allowed_names.add(id(node.value))  # a rename: the new name is tracked as the module
            self.modules.update(t.id for t in node.targets)
        self.generic_visit(node)

    def _dotted(self, node: ast.expr) -> str | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in DENIED_ATTRIBUTES:
            self.fail(node, f"access to attribute {node.attr!r} is not allowed")
        if node.attr in MODULE_ATTRIBUTES:
            self.fail(node, f"access to module {node.attr!r} through an attribute is not allowed")
        if isinstance(node.value, ast.Name):
            self.allowed_names.add(id(node.value))
        dotted = self._dotted(node)
        if dotted:
            self._check_path(node, dotted)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DENIED_BUILTINS:
            self.fail(node, f"use of {node.id!r} is not allowed")
        if id(node) not in self.allowed_names and isinstance(node.ctx, ast.Load):
            if node.id in self.modules:
                self.fail(node, f"module {node.id!r} may be used only as {node.id}.<attribute>, not as a value")
            elif node.id in REFLECTION_BUILTINS:
                self.fail(node, f"{node.id} may only be called directly")
        module = self.aliases.get(node.id, "")
        if module in RESTRICTED_MODULES:
            allowed = "|".join(sorted(RESTRICTED_MODULES[module])) or "nothing"
            self.fail(node, f"module {module!r} may be used only as {module}.<{allowed}>")

    def visit_Compare(self, node: ast.Compare) -> None:
        self.allowed_names.update(id(n) for n in (node.left, *node.comparators) if isinstance(n, ast.Name))
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if isinstance(node.annotation, ast.Name):
            self.allowed_names.add(id(node.annotation))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in REFLECTION_BUILTINS:
            self.allowed_names.add(id(node.func))
        if isinstance(node.func, ast.Name) and node.func.id in REFLECTION_BUILTINS and len(node.args) > 1:
            target, name = node.args[:2]
            if isinstance(target, ast.Name):
                self.allowed_names.add(id(target))  # checked as a module target below
            dotted = self._dotted(target) if isinstance(target, ast.Name | ast.Attribute) else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                if name.value.startswith("__") or name.value in DENIED_ATTRIBUTES | MODULE_ATTRIBUTES:
                    self.fail(node, f"{node.func.id}() of attribute {name.value!r} is not allowed")
                if dotted:
                    self._check_path(node, f"{dotted}.{name.value}")
            elif dotted:
                self.fail(node, f"{node.func.id}() on a module with a computed name is not allowed")
            elif not (isinstance(target, ast.Name) and target.id == "self"):
                self.fail(node, f"{node.func.id}() with a computed name is allowed on self only")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and any(d in node.value for d in DENIED_DUNDERS):
            self.fail(node, f"string naming a denied attribute: {node.value[:40]!r}")

    def _allowed_restricted_use(self, node: ast.Attribute) -> bool:
        """True when `node` is `alias.attr` for a restricted module with an allowed attribute."""
        if isinstance(node.value, ast.Name):
            module = self.aliases.get(node.value.id, "")
            return module in RESTRICTED_MODULES and node.attr in RESTRICTED_MODULES[module]
        return False

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Attribute) and self._allowed_restricted_use(child):
                continue
            self.visit(child)


def _checked(name: str, reflect):
    """`reflect` (getattr & co.), refusing the names the static check refuses as constants."""

    def call(target, attribute, *rest):
        if not isinstance(attribute, str) or attribute.startswith("__") or \
                attribute in DENIED_ATTRIBUTES | MODULE_ATTRIBUTES:
            raise PermissionError(f"blocked by sandbox: {name}() of attribute {str(attribute)[:40]!r}")
        return reflect(target, attribute, *rest)

    return call


def runtime_builtins() -> dict:
    """The builtins candidate code runs with in the worker: getattr, setattr, delattr and hasattr refuse dunder
    and denied names, which a computed name (allowed on self) could otherwise reach."""
    namespace = dict(builtins.__dict__)
    namespace.update({name: _checked(name, getattr(builtins, name)) for name in REFLECTION_BUILTINS})
    return namespace


def check_safety(tree: ast.Module) -> Failure | None:
    """Static allowlist of imports, names and attributes (policy in the module docstring)."""
    visitor = _SafetyVisitor()
    visitor.visit(tree)
    return (Stage.SAFETY, visitor.violation) if visitor.violation else None


def run_static_checks(code: str) -> Failure | None:
    """SYNTAX, CONTRACT and SAFETY in order; None when the candidate may go to the sandbox."""
    tree = check_syntax(code)
    if isinstance(tree, tuple):
        return tree
    try:
        return check_contract(tree) or check_safety(tree)
    except (RecursionError, MemoryError) as exc:  # the tree walk is recursive; ast.parse accepts deeper code
        return Stage.SYNTAX, f"code nested too deeply to check ({type(exc).__name__})"
