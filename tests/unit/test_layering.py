"""Layering, read from the source (ast), not from running it.

- The shared package ``backbone`` (runtime, client SDK, money, generated stubs) imports no service
  and not ``ops``: anyone can build on it without pulling a service in.
- A service (gateway, risk, trading, settlement) imports only ``backbone`` and itself: services
  talk over gRPC, never through each other's modules.
- ``ops`` (the command line, the invariant checker, the supervisor) is the only code that composes
  the services, and it learns their storage from their own code: a Redis key is spelled only by
  the service that owns it, and SQL on a service's tables is written only inside that service.

Tests may read a service's storage only through that service's audit readers, with two kinds of
exception, each listed here with its reason: a service's own tests (``tests/**/test_<service>_*.py``)
check its storage directly, and a test that damages the stores on purpose may write SQL (only
INSERT, UPDATE or DELETE; its reads go through the readers too).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SHARED = "backbone"
TOP = "ops"
SERVICES = ("gateway", "risk", "trading", "settlement")
FIRST_PARTY = (SHARED, TOP, *SERVICES, "scripts", "tests")

# Redis key prefix -> the service that owns those keys.
REDIS_OWNERS = {"risk": "risk", "gw": "gateway"}
# Shared-package modules that spell a key two services write, each with its reason.
SHARED_KEYS = {
    "backbone/claims.py": "the client-order-id claim: risk's reserve and the gateway's rare path write it",
}
# PostgreSQL schema -> the service that owns its tables.
SQL_OWNERS = {"ledger": "settlement", "trading": "trading"}

# Tests that write damage into the stores behind the services' backs, to show it is detected.
DAMAGE_TESTS = {
    "tests/integration/test_invariant_check.py": "damages each store to show `backbone check` reports it",
    "tests/integration/test_report_history.py": "blocks the history writer: a failing pass writes nothing",
}

# A key as written, as a SCAN pattern, as a hash tag or as a regular expression ("risk:\\{"): the
# prefix and a colon followed by a brace or a name ("risk: " in a sentence is not a key).
_REDIS_KEY = re.compile(r"(?<![\w.])(?P<prefix>" + "|".join(REDIS_OWNERS) + r"):(\\?\{|[A-Za-z_*])")
_SQL = re.compile(
    r"\b(FROM|JOIN|INTO|UPDATE|TABLE|COPY|TRUNCATE)\s+(?P<schema>" + "|".join(SQL_OWNERS) + r")\.\w+",
    re.IGNORECASE,
)
_SQL_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_DYNAMIC = "<a name built at run time>"


def _is_generated(path: Path) -> bool:
    """protoc's stubs (backbone/*/v1/*_pb2*.py) are left out: they import only backbone.* and protobuf."""
    return re.search(r"_pb2(_grpc)?\.pyi?$", path.name) is not None


def modules(*folders: str) -> list[Path]:
    """Every Python module under the folders (relative to the project root)."""
    return sorted(
        path
        for folder in folders
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts and not _is_generated(path)
    )


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imported_name(call: ast.Call) -> str | None:
    """The module an ``import_module(...)`` or ``__import__(...)`` call names; None for other calls."""
    function = call.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
    if name not in ("import_module", "__import__") or not call.args:
        return None
    argument = call.args[0]
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    if isinstance(argument, ast.JoinedStr) and argument.values:
        first = argument.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and "." in first.value:
            return first.value
    return _DYNAMIC


def imports(source: str, package: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in `source`, a module of `package`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, package if node.level else (node.module or "").split(".")[0]
        elif isinstance(node, ast.Call):
            name = _imported_name(node)
            if name is not None:
                yield node.lineno, name if name == _DYNAMIC else name.split(".")[0]


def strings(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal; an f-string once, its replacement fields as "…"."""
    parts: set[int] = set()
    for node in ast.walk(ast.parse(source)):  # breadth first: an f-string comes before its parts
        if isinstance(node, ast.JoinedStr):
            parts.update(id(value) for value in node.values)
            literal = "".join(
                str(value.value) if isinstance(value, ast.Constant) else "…" for value in node.values
            )
            yield node.lineno, literal
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts:
            yield node.lineno, node.value


def _package_of(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def _forbidden_imports(paths: list[Path], allowed: set[str]) -> list[str]:
    problems = []
    for path in paths:
        package = _package_of(path)
        for line, name in imports(path.read_text(encoding="utf-8"), package):
            if name == _DYNAMIC or (name in FIRST_PARTY and name not in allowed | {package}):
                problems.append(f"{_relative(path)}:{line} imports {name}")
    return problems


def test_the_import_reader_sees_every_form() -> None:
    source = (
        "import risk.store\nfrom settlement import ledger\nfrom . import sibling\n"
        "import importlib\nimportlib.import_module('trading.app')\n"
        "from importlib import import_module\nimport_module(f'gateway.{name}')\n"
        "import_module(f'{service}.app')\n__import__('ops')\n"
    )
    assert sorted(name for _, name in imports(source, "backbone")) == sorted(
        ["risk", "settlement", "backbone", "importlib", "trading", "importlib", "gateway", _DYNAMIC, "ops"]
    )
    assert [text for _, text in strings('f"risk:{{{a}}}:balances"')] == ["risk:{…}:balances"]
    for key in ("risk:{…}:balances", "risk:{*}:order:*", r"^risk:\{(?P<account>[^}]+)\}", "risk:cursor:…"):
        assert _REDIS_KEY.search(key), key
    assert _REDIS_KEY.search("{risk:instruments}:applied") and _REDIS_KEY.search("gw:{…}:coid:…")
    assert not _REDIS_KEY.search("risk: alice USD available -1")
    assert _SQL.search("SELECT 1 FROM ledger.postings") and not _SQL.search("settlement's ledger. Then")


def test_the_shared_package_imports_no_service_and_not_ops() -> None:
    paths = modules(SHARED)
    assert len(paths) > 10
    assert _forbidden_imports(paths, {SHARED}) == []


def test_services_import_only_the_shared_package_and_themselves() -> None:
    for service in SERVICES:
        paths = modules(service)
        assert paths, service
        assert _forbidden_imports(paths, {SHARED}) == [], service


def _owned_elsewhere(path: Path, owner: str) -> bool:
    """Whether `path` is outside `owner`'s code and outside `owner`'s own tests."""
    parts = path.relative_to(ROOT).parts
    if parts[0] == owner:
        return False
    return not (parts[0] == "tests" and path.name.startswith(f"test_{owner}_"))


def _scanned() -> Iterator[Path]:
    """Every first-party module but this one (whose examples would match)."""
    for path in modules(*FIRST_PARTY):
        if path != Path(__file__).resolve():
            yield path


def test_redis_keys_are_spelled_only_by_their_service() -> None:
    problems = []
    for path in _scanned():
        if _relative(path) in SHARED_KEYS:
            continue
        for line, text in strings(path.read_text(encoding="utf-8")):
            for found in _REDIS_KEY.finditer(text):
                owner = REDIS_OWNERS[found["prefix"]]
                if _owned_elsewhere(path, owner):
                    problems.append(f"{_relative(path)}:{line} spells {owner}'s key {text!r}")
    assert problems == [], "build keys with the owner's key functions (risk/keys.py):\n" + "\n".join(problems)


def test_sql_on_a_service_tables_is_written_only_by_that_service() -> None:
    problems = []
    for path in _scanned():
        damage = _relative(path) in DAMAGE_TESTS
        for line, text in strings(path.read_text(encoding="utf-8")):
            for found in _SQL.finditer(text):
                owner = SQL_OWNERS[found["schema"].lower()]
                if not _owned_elsewhere(path, owner) or (damage and _SQL_WRITE.match(text)):
                    continue
                problems.append(f"{_relative(path)}:{line} queries {owner}'s tables: {text[:80]!r}")
    advice = "read through the owner's audit module (settlement/audit.py, trading/audit.py)"
    assert problems == [], advice + ":\n" + "\n".join(problems)


def test_the_exceptions_still_exist() -> None:
    for path in [*DAMAGE_TESTS, *SHARED_KEYS]:
        assert (ROOT / path).exists(), f"{path} is gone: drop it from DAMAGE_TESTS"
