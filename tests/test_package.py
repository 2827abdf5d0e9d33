"""The package's structure: layered modules, no import cycles, no internal import deferred into a function body, a
recipe layer that does not import torch, and front ends that nothing inside imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "svp_hf"

# Each folder (or top-level module) may import its own layer or a lower one (see svp_hf/__init__.py).
LAYERS = {
    0: {"errors", "registry", "version", "_compat", "files", "account", "record", "config"},
    1: {"utils"},
    2: {"data"},
    3: {"models", "selection"},
    4: {"engine", "publish"},
    5: {"stages"},
    6: {"active"},
    7: {"jobs"},
    8: {"api", "coreset", "__main__", "__init__", "active.__main__"},
}
# Front ends: the Python API, the package, and the thin entry points of ``python -m svp_hf[.coreset|.active]``.
FRONT_ENDS = LAYERS[8]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
    return ".".join(parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}


def top(name: str) -> str:
    return name.split(".")[0]


def internal_imports(name: str, path: Path):
    """(imported module, line, at module level?) for every import of an svp_hf module in `path`."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "__init__":
        package = []
    found = []
    module_level = {id(node) for node in tree.body}
    for stmt in tree.body:  # imports under `if`/`try` at module level count as module level
        for node in ast.walk(stmt):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module_level.add(id(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                targets = [target] if node.module else [".".join([*base, a.name]) for a in node.names]
            elif node.module and node.module.split(".")[0] == "svp_hf":
                targets = [node.module[len("svp_hf.") :] if node.module != "svp_hf" else "__init__"]
            else:
                continue
            for target in targets:
                found.append((target or "__init__", node.lineno, id(node) in module_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "svp_hf":
                    found.append((alias.name[len("svp_hf.") :] or "__init__", node.lineno, id(node) in module_level))
    return found


def is_front_end(name: str) -> bool:
    return name in FRONT_ENDS or top(name) in FRONT_ENDS


def layer_of(name: str) -> int:
    if is_front_end(name):
        return max(LAYERS)
    for layer, names in LAYERS.items():
        if top(name) in names:
            return layer
    raise AssertionError(f"module svp_hf.{name} is in no layer: add it to LAYERS (and svp_hf/__init__.py's docstring)")


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_internal_import_is_deferred_into_a_function():
    deferred = [
        f"svp_hf/{path.relative_to(PACKAGE)}:{line} imports {target}"
        for name, path in modules().items()
        for target, line, at_top in internal_imports(name, path)
        if not at_top
    ]
    assert deferred == []


def test_modules_import_only_their_own_layer_or_lower():
    upward = []
    for name, path in modules().items():
        if top(name) == "__init__":
            continue  # the package's lazy exports (PEP 562) name the front ends by string
        for target, _line, _ in internal_imports(name, path):
            if layer_of(target) > layer_of(name):
                upward.append(
                    f"svp_hf.{name} (layer {layer_of(name)}) imports svp_hf.{target} (layer {layer_of(target)})"
                )
    assert upward == []


def test_nothing_inside_imports_the_front_ends():
    importers = [
        f"svp_hf.{name} imports svp_hf.{target}"
        for name, path in modules().items()
        for target, _, _ in internal_imports(name, path)
        if is_front_end(target) and not is_front_end(name)
    ]
    assert importers == []


def find_cycle(graph):
    """One import cycle in `graph` (node -> imported nodes), or None."""
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack, node, nxt]
            if nxt not in state:
                found = visit(nxt, [*stack, node])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


@pytest.mark.parametrize("granularity", ["folder", "module"])
def test_the_import_graph_has_no_cycle(granularity):
    key = top if granularity == "folder" else (lambda name: name)
    graph = {}
    for name, path in modules().items():
        if is_front_end(name):
            continue
        graph.setdefault(key(name), set()).update(
            key(t) for t, _, _ in internal_imports(name, path) if key(t) != key(name) and not is_front_end(t)
        )
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_parsing_a_recipe_does_not_import_torch():
    code = (
        "import sys; from svp_hf.config import parse_args; "
        "parse_args(['recipes/quickstart.yaml', '--proxy_epochs', '2']); "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_package_exports_load_on_first_use():
    import svp_hf

    assert callable(svp_hf.prune) and callable(svp_hf.ask) and svp_hf.SVPRuntimeError.__name__ == "SVPRuntimeError"
    assert set(svp_hf.__all__) <= set(dir(svp_hf))
    for name in svp_hf.__all__:  # every export resolves to the module that defines it
        assert getattr(svp_hf, name) is not None, name
    with pytest.raises(AttributeError):
        svp_hf.no_such_name  # noqa: B018


def run_python(code: str) -> str:
    """`code` in a fresh interpreter (nothing imported yet); its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_importing_the_package_imports_neither_torch_nor_timm():
    code = "import sys, svp_hf; print(sorted(m for m in ('torch', 'timm', 'datasets', 'transformers') if m in sys.modules))"
    assert run_python(code) == "[]"


@pytest.mark.parametrize("imports", ["import svp_hf; from timm import create_model", "import timm; import svp_hf"])
def test_the_cifar_resnets_are_in_timms_registry_whichever_is_imported_first(imports):
    code = (
        f"{imports}\n"
        "import sys, timm\n"
        "model = timm.create_model('resnet20', num_classes=10)\n"
        "hooks = [f for f in sys.meta_path if type(f).__name__ == '_RegisterWithTimm']\n"
        "own = 'exec_module' in vars(timm.__spec__.loader)\n"  # timm's loader is its own again
        "print(type(model).__name__, sorted(n for n in ('resnet20', 'resnet56', 'resnet110', 'resnet164') if timm.is_model(n)), hooks, own)"
    )
    assert run_python(code) == "PreActResNet ['resnet110', 'resnet164', 'resnet20', 'resnet56'] [] False"


def test_without_timm_imported_the_hook_touches_no_other_import():
    code = (
        "import sys, svp_hf, json\n"
        "hooks = [f for f in sys.meta_path if type(f).__name__ == '_RegisterWithTimm']\n"
        "print(len(hooks), hooks[0].find_spec('json'), hooks[0].find_spec('timm.layers'), 'svp_hf.models' in sys.modules)"
    )
    assert run_python(code) == "1 None None False"
