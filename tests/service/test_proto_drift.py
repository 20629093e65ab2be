"""The committed gRPC code must be exactly what the pinned generator makes from the .proto."""
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if importlib.util.find_spec("grpc_tools") is None:  # found, not imported: see the fresh interpreter below
    pytest.fail("grpcio-tools (the dev extra, installed by `make .venv`) is needed to check the generated code",
                pytrace=False)


def _generator():
    spec = importlib.util.spec_from_file_location("gangplace_proto_generate", ROOT / "proto" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_generated_code_matches_the_proto(tmp_path):
    # in a fresh interpreter: grpc_tools' bundled protobuf aborts the process when imported after
    # OR-Tools' (as other tests in the same session do)
    gen = _generator()
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for name in gen.GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "service" / name).read_text()
        assert fresh == committed, f"service/{name} drifted from proto/{gen.PROTO}: run `make proto` and commit"


def test_stubs_import_the_messages_from_the_package():
    text = (ROOT / "service" / "gangplace_pb2_grpc.py").read_text()
    assert "from gangplace.service import gangplace_pb2" in text
    assert "from gangplace.v1" not in text


def test_generated_code_imports_under_the_pinned_protobuf_runtime():
    from gangplace.service import gangplace_pb2, gangplace_pb2_grpc
    assert gangplace_pb2.DESCRIPTOR.package == "gangplace.v1"
    assert hasattr(gangplace_pb2_grpc, "GangplaceServicer")


def _go_or_skip():
    import shutil
    if shutil.which("go") is None:
        if os.environ.get("CI"):
            pytest.fail("Go toolchain not found: the Go gRPC code cannot be checked", pytrace=False)
        pytest.skip("Go toolchain not found: the Go gRPC code is checked where `go` is on PATH")


def test_committed_go_code_matches_the_proto(tmp_path):
    # the pinned protoc-gen-go / protoc-gen-go-grpc are go-installed into .kube/tools on first use
    _go_or_skip()
    gen = _generator()
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--go", str(tmp_path)], check=True,
                   capture_output=True, timeout=300)
    for name in gen.GO_GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (gen.DEFAULT_GO_OUT / name).read_text()
        assert fresh == committed, (f"kube/gen/gangplacev1/{name} drifted from proto/{gen.PROTO}: "
                                    "run `make proto` and commit")


def test_go_package_is_the_kube_module_path():
    text = (ROOT / "proto" / "gangplace" / "v1" / "gangplace.proto").read_text()
    assert 'option go_package = "github.com/gangplace/gangplace/kube/gen/gangplacev1;gangplacev1";' in text
    assert "package gangplacev1" in (ROOT / "kube" / "gen" / "gangplacev1" / "gangplace.pb.go").read_text()
