"""TLS and mutual TLS on both ports, with certificates made here by ``cryptography``.
A plaintext client never reaches a handler on a TLS port; with mTLS, neither does a client
without a certificate from the configured CA."""
import datetime
import http.client
import ipaddress
import ssl
import urllib.request

import grpc
import pytest

from cryptography import x509  # noqa: E402  (dev extra)
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from gangplace.engine.live.state import ClusterState  # noqa: E402
from gangplace.engine.model.synthetic import generate  # noqa: E402
from gangplace.service.client import GangplaceClient, ServiceError  # noqa: E402
from gangplace.service.config import ServeConfig, TLSConfig  # noqa: E402
from gangplace.service.testing import running_service  # noqa: E402
from gangplace.service.tls import ClientTLS  # noqa: E402

NOW = datetime.datetime.now(datetime.timezone.utc)


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool = False, server: bool = False):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False),
                            critical=True)
    elif server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(dir_, name: str, cert, key) -> tuple[str, str]:
    c, k = dir_ / f"{name}.crt", dir_ / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    out = {}
    for ca_name in ("ca", "other-ca"):
        ca_key = _key()
        ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gangplace test {ca_name}")])
        ca = _cert(f"gangplace test {ca_name}", ca_key, ca_subject, ca_key, ca=True)
        out[ca_name] = _write(d, ca_name, ca, ca_key)[0]
        s_key, c_key = _key(), _key()
        out[f"{ca_name}-server"] = _write(d, f"{ca_name}-server",
                                          _cert("localhost", s_key, ca_subject, ca_key, server=True), s_key)
        out[f"{ca_name}-client"] = _write(d, f"{ca_name}-client",
                                          _cert("a-client", c_key, ca_subject, ca_key), c_key)
    return out


def _serve(tls: TLSConfig):
    cfg = ServeConfig(grpc_listen="127.0.0.1:0", http_listen="127.0.0.1:0", tls=tls)
    return running_service(cfg, ClusterState(generate("dgx-h100", gpus=64, fill=0.0)))


@pytest.fixture(scope="module")
def tls_service(pki):
    cert, key = pki["ca-server"]
    with _serve(TLSConfig(cert=cert, key=key)) as svc:
        yield svc


@pytest.fixture(scope="module")
def mtls_service(pki):
    cert, key = pki["ca-server"]
    with _serve(TLSConfig(cert=cert, key=key, client_ca=pki["ca"], require_client_cert=True)) as svc:
        yield svc


def _grpc_ok(port: int, tls: ClientTLS | None) -> bool:
    with GangplaceClient(f"127.0.0.1:{port}", tls=tls, timeout_s=3) as c:
        try:
            c.ping()
            return True
        except ServiceError as e:
            assert e.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), e
            return False


def _https_get(port: int, tls: ClientTLS | None, scheme: str = "https") -> int:
    ctx = tls.ssl_context() if tls is not None else None
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=5, context=ctx) as r:
        r.read()
        return r.status


HTTP_REFUSED = (OSError, http.client.HTTPException, ssl.SSLError)


# ---------------------------------------------------------------------- TLS
def test_grpc_over_tls_with_the_servers_ca(tls_service, pki):
    assert _grpc_ok(tls_service.grpc_port, ClientTLS(ca=pki["ca"]))


def test_grpc_plaintext_client_is_refused_on_a_tls_port(tls_service):
    assert not _grpc_ok(tls_service.grpc_port, None)


def test_grpc_client_trusting_another_ca_is_refused(tls_service, pki):
    assert not _grpc_ok(tls_service.grpc_port, ClientTLS(ca=pki["other-ca"]))


def test_https_with_the_servers_ca(tls_service, pki):
    assert _https_get(tls_service.http_port, ClientTLS(ca=pki["ca"])) == 200


def test_plain_http_is_refused_on_a_tls_port(tls_service):
    with pytest.raises(HTTP_REFUSED):
        _https_get(tls_service.http_port, None, scheme="http")


# ---------------------------------------------------------------------- mTLS
def test_grpc_mtls_with_a_client_certificate(mtls_service, pki):
    cert, key = pki["ca-client"]
    assert _grpc_ok(mtls_service.grpc_port, ClientTLS(ca=pki["ca"], cert=cert, key=key))


def test_grpc_mtls_without_a_client_certificate_is_refused(mtls_service, pki):
    assert not _grpc_ok(mtls_service.grpc_port, ClientTLS(ca=pki["ca"]))


def test_grpc_mtls_with_a_certificate_from_another_ca_is_refused(mtls_service, pki):
    cert, key = pki["other-ca-client"]
    assert not _grpc_ok(mtls_service.grpc_port, ClientTLS(ca=pki["ca"], cert=cert, key=key))


def test_https_mtls_with_a_client_certificate(mtls_service, pki):
    cert, key = pki["ca-client"]
    assert _https_get(mtls_service.http_port, ClientTLS(ca=pki["ca"], cert=cert, key=key)) == 200


def test_https_mtls_without_a_client_certificate_is_refused(mtls_service, pki):
    with pytest.raises(HTTP_REFUSED):
        _https_get(mtls_service.http_port, ClientTLS(ca=pki["ca"]))


def test_https_mtls_with_a_certificate_from_another_ca_is_refused(mtls_service, pki):
    cert, key = pki["other-ca-client"]
    with pytest.raises(HTTP_REFUSED):
        _https_get(mtls_service.http_port, ClientTLS(ca=pki["ca"], cert=cert, key=key))


def test_plaintext_is_refused_on_both_mtls_ports(mtls_service):
    assert not _grpc_ok(mtls_service.grpc_port, None)
    with pytest.raises(HTTP_REFUSED):
        _https_get(mtls_service.http_port, None, scheme="http")
