"""Generate the gangplace.v1 Python modules into the package (``service/``).

``python proto/generate.py [OUT_DIR]`` (``make proto``) runs the pinned ``grpc_tools.protoc``
(grpcio-tools 1.81.x: its gencode accepts protobuf 6.33, see STACK.md) and rewrites the one
import protoc writes for a bare top-level ``gangplace.v1`` package so that the stubs import
``from gangplace.service import gangplace_pb2``. tests/service/test_proto_drift.py runs this
into a temporary directory and compares the result with the committed files.
"""
from __future__ import annotations

import pathlib
import sys
import tempfile

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
PROTO = "gangplace/v1/gangplace.proto"
DEFAULT_OUT = PROTO_ROOT.parent / "service"
GENERATED = ("gangplace_pb2.py", "gangplace_pb2_grpc.py", "gangplace_pb2.pyi")
_BARE_IMPORT = "from gangplace.v1 import gangplace_pb2 as"
_PACKAGE_IMPORT = "from gangplace.service import gangplace_pb2 as"


def generate(out_dir: pathlib.Path = DEFAULT_OUT) -> list[pathlib.Path]:
    """Write the three generated files into ``out_dir``; return their paths."""
    from grpc_tools import protoc
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"  # well-known types
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}",
                          f"--grpc_python_out={tmp}", f"--pyi_out={tmp}", str(PROTO_ROOT / PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        written = []
        for name in GENERATED:
            text = (pathlib.Path(tmp) / "gangplace" / "v1" / name).read_text()
            text = text.replace(_BARE_IMPORT, _PACKAGE_IMPORT)
            dst = out_dir / name
            dst.write_text(text)
            written.append(dst)
    return written


if __name__ == "__main__":
    for path in generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT):
        print(path)
