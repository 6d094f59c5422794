"""Every launcher in experiments/ defines its absl flags once: a launcher that imports another
module defining a flag of the same name dies at import with DuplicateFlagError (found in
probe_token_stability, which imported evaluate_tokenizer's --workdir). Read from the sources, so
the check costs no imports."""

import ast
import os

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


def imported_launchers(tree: ast.Module, launchers: set[str]) -> set[str]:
    """The experiments/*.py modules the module imports anywhere in its body."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "experiments" and len(parts) == 2 and parts[1] in launchers:
                found.add(parts[1])
    return found


def test_top_level_flags_reads_define_calls():
    tree = ast.parse('A = flags.DEFINE_string("workdir", "x", "h")\n'
                     'config_flags.DEFINE_config_file("config")\nB = f("nope")\n')
    assert top_level_flags(tree) == ["workdir", "config"]


def test_no_launcher_defines_a_flag_twice_with_what_it_imports():
    launchers = {f[:-3] for f in os.listdir(EXPERIMENTS) if f.endswith(".py")} - {"__init__"}
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
