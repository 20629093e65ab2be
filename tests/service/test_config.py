"""Service configuration: defaults in one place, YAML validated at start, errors name the field."""
import argparse
from pathlib import Path

import pytest

from gangplace.service import cmd_serve
from gangplace.service.config import ConfigError, ServeConfig, load_config


def write(tmp_path, text: str):
    p = tmp_path / "gangplace.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_are_the_documented_ones():
    cfg = load_config()
    assert cfg == ServeConfig()
    assert cfg.grpc_listen == "127.0.0.1:50051" and cfg.http_listen == "127.0.0.1:8888"
    assert cfg.cluster.kind == "synthetic" and cfg.cluster.synthetic == "dgx-h100" and cfg.cluster.gpus == 2048
    assert not cfg.tls.enabled


def test_a_full_yaml_file_is_read(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text("levels: [rack]\nnodes: [{name: n1, topology: {rack: r1}, gpus: 8}]\n")
    cfg = load_config(write(tmp_path, f"""
cluster: {{file: {cluster}}}
grpc_listen: 0.0.0.0:9000
http_listen: "[::1]:9001"
placer: heuristic
time_limit_ms: 50
reservation_ttl_s: 12.5
request_timeout_s: 3
log_level: debug
"""))
    assert cfg.cluster.kind == "file" and cfg.cluster.file == str(cluster)
    assert cfg.grpc_listen == "0.0.0.0:9000" and cfg.http_listen == "[::1]:9001"
    assert (cfg.placer, cfg.time_limit_ms, cfg.reservation_ttl_s, cfg.log_level) == ("heuristic", 50.0, 12.5, "debug")


BAD = [
    ("an unknown top-level key", "grpc_port: 5", "config"),
    ("an unknown key in cluster", "cluster: {synthetic: dgx-h100, nodes: 5}", "config.cluster"),
    ("a string where a number belongs", "time_limit_ms: fast", "config.time_limit_ms"),
    ("a bool is not an integer", "cluster: {synthetic: dgx-h100, gpus: true}", "config.cluster.gpus"),
    ("an unknown preset", "cluster: {synthetic: dgx-z}", "config.cluster.synthetic"),
    ("two cluster sources", "cluster: {synthetic: dgx-h100, in_cluster: true}", "config.cluster"),
    ("a missing cluster file", "cluster: {file: /nonexistent/c.yaml}", "config.cluster.file"),
    ("too few GPUs", "cluster: {gpus: 1}", "config.cluster.gpus"),
    ("a fill above 1", "cluster: {fill: 1.5}", "config.cluster.fill"),
    ("an address without a port", "grpc_listen: localhost", "config.grpc_listen"),
    ("a port out of range", "http_listen: 127.0.0.1:70000", "config.http_listen"),
    ("both ports on one address", "grpc_listen: 127.0.0.1:9000\nhttp_listen: 127.0.0.1:9000", "config.http_listen"),
    ("an unknown placer", "placer: magic", "config.placer"),
    ("a zero timeout", "request_timeout_s: 0", "config.request_timeout_s"),
    ("a tiny body limit", "http_max_body_bytes: 10", "config.http_max_body_bytes"),
    ("an unknown log level", "log_level: loud", "config.log_level"),
    ("a cert without a key", "tls: {cert: /etc/hostname}", "config.tls.key"),
    ("client certs without TLS", "tls: {client_ca: /etc/hostname}", "config.tls.cert"),
    ("mTLS without a CA", "tls: {cert: /etc/hostname, key: /etc/hostname, require_client_cert: true}",
     "config.tls.client_ca"),
    ("a missing key file", "tls: {cert: /etc/hostname, key: /nonexistent.key}", "config.tls.key"),
    ("a list instead of a mapping", "- a\n- b", "config"),
    ("tls as a scalar", "tls: yes", "config.tls"),
    ("an empty level list", "cluster: {kubeconfig: /etc/hostname, topology_levels: []}", "config.cluster.topology_levels"),
    ("a level without its label", "cluster: {kubeconfig: /etc/hostname, topology_levels: [{name: rack}]}",
     "config.cluster.topology_levels[0].label"),
    ("a level with an unknown key", "cluster: {kubeconfig: /etc/hostname, topology_levels: [{label: a, lvl: b}]}",
     "config.cluster.topology_levels[0]"),
]


@pytest.mark.parametrize("text,field", [(t, f) for _, t, f in BAD], ids=[i for i, _, _ in BAD])
def test_bad_config_fails_at_start_naming_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert e.value.field == field
    assert str(e.value).startswith(field + ":")


def test_an_explicit_level_list_for_labels_no_preset_knows(tmp_path):
    from gangplace.service.app import _levels_spec
    from gangplace.service.topology_presets import resolve_levels
    cfg = load_config(write(tmp_path, """
cluster:
  kubeconfig: /etc/hostname
  topology_levels:
  - {name: hall, label: example.com/hall}
  - {name: rack, label: example.com/rack}
  - nvidia.com/gpu.clique
"""))
    spec = _levels_spec(cfg.cluster.topology_levels)
    levels = resolve_levels(spec, [{"example.com/hall": "h1", "example.com/rack": "r1", "nvidia.com/gpu.clique": "c"}])
    assert levels.names == ("hall", "rack", "gpu.clique")
    assert levels.keys == ("example.com/hall", "example.com/rack", "nvidia.com/gpu.clique")


def test_an_unparsable_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "cluster: [unclosed"))
    assert e.value.field == "--config"
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "missing.yaml"))
    assert e.value.field == "--config"


def test_an_empty_file_means_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == ServeConfig()


def _args(*argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cmd_serve.add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, "cluster: {synthetic: gb200-nvl72, gpus: 4096}\nplacer: heuristic\n")
    cfg = cmd_serve.config_from_args(_args("--config", path, "--gpus", "1024", "--grpc-listen", "127.0.0.1:0"))
    assert cfg.cluster.synthetic == "gb200-nvl72" and cfg.cluster.gpus == 1024
    assert cfg.placer == "heuristic" and cfg.grpc_listen == "127.0.0.1:0"


def test_a_source_flag_replaces_the_files_source(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text("levels: [rack]\nnodes: [{name: n1, topology: {rack: r1}, gpus: 8}]\n")
    path = write(tmp_path, "cluster: {synthetic: gb200-nvl72}\n")
    cfg = cmd_serve.config_from_args(_args("--config", path, "--cluster", str(cluster)))
    assert cfg.cluster.kind == "file" and cfg.cluster.synthetic is None


def test_make_run_flags_give_the_default_service():
    cfg = cmd_serve.config_from_args(_args("--synthetic", "dgx-h100", "--gpus", "2048"))
    assert cfg == ServeConfig()


def test_tls_flags_are_checked_like_the_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        cmd_serve.config_from_args(_args("--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", "/etc/hostname"))
    assert e.value.field == "config.tls.cert"


@pytest.mark.parametrize("path", ["deploy/base/gangplace.yaml", "deploy/overlays/file/gangplace.yaml"])
def test_every_shipped_service_config_validates(tmp_path, path):
    import shutil
    root = Path(__file__).resolve().parents[2]
    text = (root / path).read_text()
    if "file: /etc/gangplace/cluster.yaml" in text:  # the file overlay: its cluster file beside it
        shutil.copy(root / "deploy/overlays/file/cluster.yaml", tmp_path / "cluster.yaml")
        text = text.replace("/etc/gangplace/cluster.yaml", str(tmp_path / "cluster.yaml"))
        text = text.replace("/var/lib/gangplace/state", str(tmp_path / "state"))
    cfg = load_config(write(tmp_path, text))
    if cfg.cluster.kind == "kubernetes":
        assert cfg.cluster.in_cluster
        assert cfg.request_timeout_s > cfg.extender.bind_timeout_s  # above the extender's bind barrier
    else:
        assert cfg.cluster.kind == "file" and cfg.state_dir and not cfg.ephemeral


def _doc_config_block() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs/service.md").read_text()
    start = text.index("Full example (every key is optional):\n```yaml\n") + len("Full example (every key is optional):\n```yaml\n")
    return text[start:text.index("```", start)]


def _leaf_keys(cls, prefix: str = "") -> dict[str, object]:
    import dataclasses
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            out.update(_leaf_keys(type(default), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = default
    return out


def test_docs_service_md_lists_every_config_key_with_its_default_and_the_loader_accepts_each(tmp_path):
    import yaml

    from gangplace.service.config import ClusterSource, ServeConfig
    block = _doc_config_block()
    doc = yaml.safe_load(block)
    flat = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    code = _leaf_keys(ServeConfig)
    # the cluster source keys are alternatives ("synthetic: ... or file: ..."): named in the comment
    sources = {f"cluster.{k}" for k in ("file", "kubeconfig", "in_cluster")}
    assert all(k.split(".")[1] in block for k in sources)
    missing = sorted(set(code) - set(flat) - sources)
    assert missing == [], f"docs/service.md does not list {missing}"
    assert sorted(set(flat) - set(code)) == [], "docs/service.md lists keys the code does not have"
    lines = {line.split(":")[0].strip(): line for line in block.splitlines() if ":" in line}
    for key, value in flat.items():
        default = code[key] if key != "cluster.synthetic" else ClusterSource().synthetic or "dgx-h100"
        if value != default:
            assert "default:" in lines[key.split(".")[-1]], f"{key}: the doc shows {value!r}, the default is {default!r}"
    # every key is accepted, together, by the loader (TLS files made real, paths writable)
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("x")
    block = block.replace("/etc/gangplace/", f"{tmp_path}/").replace("/var/lib/gangplace", str(tmp_path / "state"))
    (tmp_path / "c.yaml").write_text(block)
    cfg = load_config(str(tmp_path / "c.yaml"))
    assert cfg.metrics_listen == "0.0.0.0:9090" and cfg.extender.bind_timeout_s == 25
    for key in flat:  # and each alone, so no key is accepted only thanks to another
        top, _, sub = key.partition(".")
        one = {top: {sub: doc[top][sub]}} if sub else {top: doc[top]}
        if top == "tls":
            continue  # TLS keys depend on each other (cert with key); checked together above
        (tmp_path / "one.yaml").write_text(yaml.safe_dump(one).replace("/var/lib/gangplace", str(tmp_path / "s")))
        load_config(str(tmp_path / "one.yaml"))


@pytest.mark.parametrize("key, value, field", [
    ("bind_timeout_s", 0, "config.extender.bind_timeout_s"),
    ("gang_timeout_s", -1, "config.extender.gang_timeout_s"),
    ("report_all_failed", "yes", "config.extender.report_all_failed"),
    ("colour", 1, "config.extender"),
], ids=["a zero bind timeout is refused", "a negative gang timeout is refused",
        "a string for a flag is refused", "an unknown extender key is refused"])
def test_bad_extender_settings_name_the_key(tmp_path, key, value, field):
    import yaml
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"extender": {key: value}}))
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "c.yaml"))
    assert e.value.field == field
