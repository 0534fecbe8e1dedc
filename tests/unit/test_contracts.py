"""The contracts: protos lint clean under buf, and the committed generated code is current."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str:
    candidate = Path(sys.executable).parent / "buf"
    found = str(candidate) if candidate.exists() else shutil.which("buf")
    assert found, "buf is missing: the dev extra installs it (buf-bin)"
    return found


def test_protos_pass_buf_lint() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_check_notices_a_change(tmp_path: Path) -> None:
    """The check is not vacuous: an edited generated file is reported."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", copy / "protos")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(ROOT / "backbone", copy / "backbone", ignore=shutil.ignore_patterns("__pycache__"))
    generated = copy / "backbone" / "common" / "v1" / "common_pb2.pyi"
    generated.write_text(generated.read_text() + "\n# edited by hand\n")
    result = subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "common_pb2.pyi" in result.stderr
