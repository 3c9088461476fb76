"""The library's shape, checked: no function takes more than 8 parameters (settings travel as
one object), so a newcomer reads a call without counting arguments."""

from __future__ import annotations

import ast
from pathlib import Path

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
