"""Regenerate node/api from proto/ (or, with --check, fail if the checked-in code is stale).

    python proto/gen.py          # rewrite node/api/*_pb2*.py(i)
    python proto/gen.py --check  # CI: exit 1 if regenerating would change anything

grpc_tools writes `import bullyproof_pb2 as ...` (an absolute import); we rewrite it to a relative
import so the generated code lives inside the `node.api` package without touching sys.path.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "node" / "api"
PROTOS = ["bullyproof/v1/bullyproof.proto"]


def generate(out_dir: Path) -> dict[str, str]:
    import grpc_tools
    from grpc_tools import protoc  # test extra; only needed to regenerate

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files: dict[str, str] = {}
        for path in sorted(Path(tmp).rglob("*.py*")):
            text = path.read_text()
            text = re.sub(r"^from bullyproof\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M)
            files[path.name] = text
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if node/api is out of date")
    args = parser.parse_args()
    files = generate(OUT_DIR)
    stale = [
        name for name, text in files.items() if not (OUT_DIR / name).exists() or (OUT_DIR / name).read_text() != text
    ]
    if args.check:
        if stale:
            print(f"generated code is stale: {', '.join(stale)}; run: python proto/gen.py", file=sys.stderr)
            return 1
        print(f"generated code is current ({len(files)} files)")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
