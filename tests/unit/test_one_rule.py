"""One rule per thing: id formats and instrument limits are defined only in backbone/ids.py.

Read from the source (ast): no module of a service package (gateway, risk, trading, settlement) or
of ops defines a constant named like a format or a limit (MAX_*_LENGTH, *_MAX_LENGTH, MAX_FEE_BPS,
MAX_SCALE, MAX_BOOK_DEPTH, MAX_DECIMAL_*, INT64_MAX, *_PATTERN), and none spells a regular
expression that looks like an id pattern (a bracket expression with a range such as ``A-Z`` or
``0-9``, or a ``\\d``/``\\w`` class), whether passed to ``re`` or written as a plain string (an SQL
``~`` pattern in Python code counts too). Such a copy drifts: that is how the gateway came to allow
64-character ids while risk allowed 128. Import the rule from backbone.ids instead.

The SQL CHECK constraints in the migrations are the one deliberate second copy; the integration
test tests/integration/test_settlement_id_checks.py keeps their verdicts equal to backbone.ids'.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("gateway", "risk", "trading", "settlement", "ops")
HOME = "backbone/ids.py"

_LIMIT_NAME = re.compile(
    r"(MAX_\w*LENGTH|\w+_MAX_LENGTH|MAX_FEE_BPS|MAX_SCALE|MAX_BOOK_DEPTH|MAX_DECIMAL_\w+|INT64_MAX|\w*PATTERN)"
)
# A bracket expression holding an ASCII range (A-Z, a-z, 0-9, !-~ ...), or a \d / \w class.
_ID_REGEX = re.compile(r"\[[^\]]*[!-~]-[!-~][^\]]*\]|\\[dw]")
_RE_FUNCTIONS = frozenset({"compile", "match", "fullmatch", "search", "findall", "finditer", "sub", "split"})


def _modules() -> list[Path]:
    return sorted(
        path
        for package in SCANNED
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts and not re.search(r"_pb2(_grpc)?\.pyi?$", path.name)
    )


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (prose, not patterns)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _assigned_names(node: ast.AST) -> Iterator[str]:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    for target in targets:
        for name in ast.walk(target):
            if isinstance(name, ast.Name):
                yield name.id


def _is_re_call(node: ast.Call) -> bool:
    function = node.func
    return (
        isinstance(function, ast.Attribute)
        and function.attr in _RE_FUNCTIONS
        and isinstance(function.value, ast.Name)
        and function.value.id == "re"
    )


def stray_copies(source: str, where: str) -> list[str]:
    """Every definition of a format or limit, and every id-like regular expression, in `source`."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    problems = []
    for node in ast.walk(tree):
        for name in _assigned_names(node):
            if _LIMIT_NAME.fullmatch(name):
                problems.append(f"{where}:{node.lineno} defines {name}")  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and _is_re_call(node) and node.args:
            pattern = node.args[0]
            if not (isinstance(pattern, ast.Constant) and isinstance(pattern.value, str)):
                continue
            if _ID_REGEX.search(pattern.value) or re.search(r"\{\d+,\d+\}", pattern.value):
                problems.append(f"{where}:{node.lineno} compiles the id-like pattern {pattern.value!r}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _ID_REGEX.search(node.value)
        ):
            problems.append(f"{where}:{node.lineno} spells the id-like pattern {node.value[:60]!r}")
    return sorted(set(problems))


def test_the_scan_sees_every_form() -> None:
    source = (
        "import re\n"
        "MAX_ID_LENGTH = 128\n"
        "SYMBOL_MAX_LENGTH: int = 32\n"
        "MAX_FEE_BPS = 10_000\n"
        "MAX_SCALE = 18\n"
        "ORDER_ID_PATTERN = re.compile(r'^[A-Za-z0-9._:-]{1,64}$')\n"
        "_X = re.compile('x{1,64}')\n"
        "class C:\n"
        "    MAX_SOURCE_LENGTH = 64\n"
        "def f(v):\n"
        "    '''Checks [A-Z] in prose: a docstring is not a pattern.'''\n"
        "    return re.fullmatch(r'\\d+', v)\n"
        "SQL = \"SELECT 1 WHERE code ~ '^[A-Z0-9]{1,12}$'\"\n"
        "OK = re.compile(r'^book:\\{(?P<symbol>[^}]+)\\}$')\n"
        "MAX_ITEMS = 10\n"
    )
    found = stray_copies(source, "m.py")
    flagged_lines = sorted({int(problem.split(":")[1].split()[0]) for problem in found})
    assert flagged_lines == [2, 3, 4, 5, 6, 7, 9, 12, 13], found


def test_formats_and_limits_are_defined_only_in_backbone_ids() -> None:
    modules = _modules()
    assert len(modules) > 20  # the scan reads the packages
    problems = []
    for path in modules:
        problems += stray_copies(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert problems == [], f"import the rule from {HOME} instead:\n" + "\n".join(problems)


def test_the_home_of_the_rules_defines_them() -> None:
    source = (ROOT / HOME).read_text(encoding="utf-8")
    names = {name for node in ast.walk(ast.parse(source)) for name in _assigned_names(node)}
    for expected in ("MAX_ID_LENGTH", "MAX_SYMBOL_LENGTH", "MAX_FEE_BPS", "MAX_SCALE", "INT64_MAX"):
        assert expected in names
