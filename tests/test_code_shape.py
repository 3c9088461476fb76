"""The library's shape, checked: no function takes more than 8 parameters (settings travel as
one object), imports only run down the layers, and no private name crosses a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lora_forecast"
MAX_PARAMETERS = 8


def _wide_functions(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            params = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)
                      if a.arg not in ("self", "cls")]
            if len(params) > MAX_PARAMETERS:
                found.append(f"{name}:{node.lineno} {node.name} ({len(params)} parameters)")
    return found


def test_the_check_sees_a_wide_function() -> None:
    wide = "def f(a, b, c, d, e, f, g, h, i):\n    pass\n"
    narrow = "class C:\n    def m(self, a, b, c, d, e, f, g, *, h):\n        pass\n"
    assert _wide_functions(wide, "x.py") == ["x.py:1 f (9 parameters)"]
    assert _wide_functions(narrow, "y.py") == []


def test_no_library_function_takes_more_than_eight_parameters() -> None:
    wide = [hit for path in sorted(PACKAGE.rglob("*.py"))
            for hit in _wide_functions(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert wide == [], "pass a settings object instead: " + "; ".join(wide)


# Each top-level module or package of lora_forecast and its layer: a module may import from its
# own layer or lower ones, never higher (data flows config -> build -> run -> record; commands
# sit on top). A new module must be placed here.
LAYERS = {
    "errors": 0, "paths": 0, "results": 0, "job": 0, "quiet": 0,
    "flops": 1,
    "config": 2,
    "command": 3,
    "llmtime": 4, "data": 4, "evaluation": 4, "tracking": 4, "budget": 4, "summary": 4,
    "models": 5,
    "forecasting": 6, "training": 6,
    "planning": 7,
    "run_folder": 8, "admission": 8, "finetune": 8, "run_outputs": 8,
    "run": 9, "forecast_job": 9, "export": 9, "report": 9,
    "task": 10, "benchmark": 10,
    "__main__": 11, "forecast": 11, "__init__": 11,
}


def _unit(module: str) -> str:
    """``lora_forecast.<unit>[...]`` -> ``<unit>``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(module, imported names, line)`` of every lora_forecast import, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lora_forecast"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names
                      if a.name.startswith("lora_forecast")]
    return found


def _source_unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" \
        else "__init__"


def test_every_module_has_a_layer() -> None:
    units = {_source_unit(p) for p in PACKAGE.rglob("*.py")} - {"conf"}
    assert sorted(units - set(LAYERS)) == []
    assert sorted(set(LAYERS) - units) == []  # no stale entries


def test_imports_only_run_down_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _source_unit(path)
        for module, _, line in _imports(path):
            dst = _unit(module)
            if dst != src and LAYERS[dst] > LAYERS[src]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} {src} -> {dst}")
    assert upward == []


def test_no_private_name_crosses_a_module() -> None:
    crossing = [f"{path.relative_to(PACKAGE)}:{line} {module}.{name}"
                for path in sorted(PACKAGE.rglob("*.py"))
                for module, names, line in _imports(path) for name in names
                if name.startswith("_") and not name.startswith("__")]
    assert crossing == []


def _console_scripts() -> dict[str, str]:
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    return pyproject["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_every_command_runs_in_the_one_wrapper(script: str) -> None:
    import importlib

    module, name = _console_scripts()[script].split(":")
    entry = getattr(importlib.import_module(module), name)
    assert Path(entry.__code__.co_filename).name == "command.py", script  # made by the wrapper
    assert entry.__wrapped__.__module__ == module  # around the command's own body


def test_only_the_wrapper_prints_errors_and_sets_hydra_full_error() -> None:
    breaking = [f"{path.relative_to(PACKAGE)}:{node.lineno}"
                for path in sorted(PACKAGE.rglob("*.py")) if path.name != "command.py"
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and (node.value.startswith("error: ") or node.value == "HYDRA_FULL_ERROR")]
    assert breaking == []
