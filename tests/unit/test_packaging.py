"""The image and the wheel: the Dockerfile lints clean and the wheel carries every file the services read."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    assert found, f"{name} is missing: the dev extra installs it"
    return found


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_every_package_the_wheel_needs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("backbone", "ops", "gateway", "risk", "trading", "settlement"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "USER 10001" in dockerfile


def test_wheel_carries_migrations_scripts_and_types(tmp_path: Path) -> None:
    """What `pip install .` (the Dockerfile's install step) builds holds the non-Python files too."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "No module named 'hatchling'" in result.stderr:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), "."],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ops/cli.py",
        "backbone/client/py.typed",
        "backbone/gateway/v1/gateway_pb2.py",
        "settlement/migrations/001_ledger.sql",
        "trading/migrations/001_journal.sql",
        "gateway/app.py",
        "risk/app.py",
    ):
        assert required in names, f"{required} missing from the wheel"
    assert any(name.startswith("risk/lua/") and name.endswith(".lua") for name in names)
