"""The launchers in experiments/, read from their sources (importing one defines its absl flags
in the suite's process, and most are run by no test): each defines its flags once, and every name
it imports from the project exists. The first broke unseen: probe_token_stability died at import
with DuplicateFlagError, having imported evaluate_tokenizer's --workdir."""

import ast
import importlib
import os

import pytest

from tests.conftest import REPO_ROOT

EXPERIMENTS = os.path.join(REPO_ROOT, "experiments")


def _parse(name: str) -> ast.Module:
    with open(os.path.join(EXPERIMENTS, f"{name}.py")) as f:
        return ast.parse(f.read())


def top_level_flags(tree: ast.Module) -> list[str]:
    """Names passed to `*.DEFINE_*("name", ...)` in the module's top-level statements."""
    names = []
    for node in tree.body:
        call = getattr(node, "value", None)
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr.startswith("DEFINE") and call.args
                and isinstance(call.args[0], ast.Constant)):
            names.append(call.args[0].value)
    return names


def top_level_names(tree: ast.Module) -> set[str]:
    """Functions, classes, assigned and imported names at the module's top level."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def launcher_named(module: str | None, launchers) -> str | None:
    """`X` where `module` is `experiments.X` and X is one of `launchers`, else None."""
    parts = (module or "").split(".")
    if len(parts) == 2 and parts[0] == "experiments" and parts[1] in launchers:
        return parts[1]
    return None


def imported_launchers(tree: ast.Module, launchers) -> set[str]:
    """The experiments/*.py modules the module imports anywhere in its body."""
    return {launcher_named(node.module, launchers) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)} - {None}


LAUNCHERS = sorted(f[:-3] for f in os.listdir(EXPERIMENTS)
                   if f.endswith(".py") and f != "__init__.py")


def test_top_level_flags_reads_define_calls():
    tree = ast.parse('A = flags.DEFINE_string("workdir", "x", "h")\n'
                     'config_flags.DEFINE_config_file("config")\nB = f("nope")\n')
    assert top_level_flags(tree) == ["workdir", "config"]


def test_no_launcher_defines_a_flag_twice_with_what_it_imports():
    launchers = set(LAUNCHERS)
    trees = {name: _parse(name) for name in launchers}
    clashes = {}
    for name in sorted(launchers):
        seen, stack, defined = set(), [name], {}
        while stack:  # the module and everything of experiments/ it imports, transitively
            module = stack.pop()
            if module in seen:
                continue
            seen.add(module)
            for flag in top_level_flags(trees[module]):
                defined.setdefault(flag, []).append(module)
            stack.extend(imported_launchers(trees[module], launchers))
        twice = {flag: mods for flag, mods in defined.items() if len(mods) > 1}
        if twice:
            clashes[name] = twice
    assert any(top_level_flags(trees[n]) for n in launchers)  # the reader finds flags at all
    assert clashes == {}


PROJECT_PACKAGES = ("roboscape_jax", "experiments", "data_pipeline")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_names_a_launcher_imports_from_the_project_exist(launcher):
    missing = []
    for node in ast.walk(_parse(launcher)):
        if not (isinstance(node, ast.ImportFrom) and node.module
                and node.module.split(".")[0] in PROJECT_PACKAGES):
            continue
        other = launcher_named(node.module, LAUNCHERS)
        if other:  # importing another launcher here would define its flags: read its source
            defined = top_level_names(_parse(other))
            missing += [f"{node.module}.{a.name}" for a in node.names if a.name not in defined]
            continue
        module = importlib.import_module(node.module)
        for alias in node.names:
            if not hasattr(module, alias.name):
                try:  # a submodule: `from package import module`
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    missing.append(f"{node.module}.{alias.name}")
    assert missing == []
