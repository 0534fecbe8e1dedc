"""Regenerate the committed Python code for every .proto under protos/.

Usage: python scripts/gen_protos.py [--check]

With --check nothing is written; the exit status is 1 when the committed code
differs from what the protos generate (tests run this to catch stale code).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGES = ("common", "gateway", "risk", "trading", "settlement")


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto into out_dir."""
    include = Path(protoc.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in PACKAGES:
        for folder in (out_dir / "backbone" / package, out_dir / "backbone" / package / "v1"):
            (folder / "__init__.py").touch()


def generated_files(base: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for package in PACKAGES:
        for path in sorted((base / "backbone" / package).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".pyi"}:
                files[str(path.relative_to(base))] = path.read_bytes()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        out_dir = Path(temporary)
        generate(out_dir)
        fresh = generated_files(out_dir)
        if options.check:
            committed = generated_files(ROOT)
            stale = sorted(set(fresh.items()) ^ set(committed.items()))
            if stale:
                names = sorted({name for name, _ in stale})
                print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
                for name in names:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print("generated code is up to date")
            return 0
        for package in PACKAGES:
            target = ROOT / "backbone" / package
            if target.exists():
                shutil.rmtree(target)
        for name, content in fresh.items():
            path = ROOT / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        print(f"wrote {len(fresh)} files")
        return 0


if __name__ == "__main__":
    sys.exit(main())
