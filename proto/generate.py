"""Generate the gangplace.v1 Python modules into the package (``service/``) and the Go package
into ``kube/gen/gangplacev1``.

``python proto/generate.py [OUT_DIR]`` (``make proto``) runs the pinned ``grpc_tools.protoc``
(grpcio-tools 1.81.x: its gencode accepts protobuf 6.33, see STACK.md) and rewrites the one
import protoc writes for a bare top-level ``gangplace.v1`` package so that the stubs import
``from gangplace.service import gangplace_pb2``. tests/service/test_proto_drift.py runs this
into a temporary directory and compares the result with the committed files.

Go: ``python proto/generate.py --go [OUT_DIR]`` runs the same protoc with ``protoc-gen-go`` and
``protoc-gen-go-grpc`` at the versions pinned below, installed by ``go install`` into the git-ignored
``.kube/tools/`` the first time (``ensure_go_plugins``; the Go module proxy serves them).
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

REPO = PROTO_ROOT.parent
DEFAULT_GO_OUT = REPO / "kube" / "gen" / "gangplacev1"
GO_GENERATED = ("gangplace.pb.go", "gangplace_grpc.pb.go")
GO_TOOLS = REPO / ".kube" / "tools"
# protoc-gen-go at the google.golang.org/protobuf version kube/go.sum already pins (Kubernetes'),
# protoc-gen-go-grpc at its newest release (its code needs grpc >= 1.64; kube/ has 1.79.3)
GO_PLUGINS = {
    "protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12-0.20260120151049-f2248ac996af",
    "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2",
}


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


def ensure_go_plugins(tools: pathlib.Path = GO_TOOLS) -> dict[str, pathlib.Path]:
    """The two Go protoc plugins, ``go install``ed at their pinned versions when missing (a
    ``.version`` file beside each binary records what it was built from)."""
    import os
    import subprocess

    tools.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, pkg in GO_PLUGINS.items():
        binary, stamp = tools / name, tools / f"{name}.version"
        if not binary.exists() or not stamp.exists() or stamp.read_text() != pkg:
            subprocess.run(["go", "install", pkg], check=True, cwd=tools,
                           env={**os.environ, "GOBIN": str(tools), "GOFLAGS": "-trimpath"})
            stamp.write_text(pkg)
        paths[name] = binary
    return paths


def generate_go(out_dir: pathlib.Path = DEFAULT_GO_OUT) -> list[pathlib.Path]:
    """Write the Go messages and gRPC stubs into ``out_dir``; return their paths."""
    from grpc_tools import protoc

    plugins = ensure_go_plugins()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}",
                          f"--plugin=protoc-gen-go={plugins['protoc-gen-go']}",
                          f"--plugin=protoc-gen-go-grpc={plugins['protoc-gen-go-grpc']}",
                          f"--go_out={tmp}", "--go_opt=paths=source_relative",
                          f"--go-grpc_out={tmp}", "--go-grpc_opt=paths=source_relative",
                          str(PROTO_ROOT / PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc (Go) failed with exit code {rc}")
        written = []
        for name in GO_GENERATED:
            dst = out_dir / name
            dst.write_text((pathlib.Path(tmp) / "gangplace" / "v1" / name).read_text())
            written.append(dst)
    return written


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--go"]:
        for path in generate_go(pathlib.Path(args[1]) if len(args) > 1 else DEFAULT_GO_OUT):
            print(path)
    else:
        for path in generate(pathlib.Path(args[0]) if args else DEFAULT_OUT):
            print(path)
