"""TLS and mutual TLS for both ports: gRPC credentials and aiohttp's ``ssl.SSLContext`` from the
same PEM files (config.TLSConfig), and the client side (``ClientTLS``).

Server: ``cert``/``key`` turn TLS on; ``client_ca`` verifies client certificates against that CA;
``require_client_cert`` refuses clients without one (mTLS). A plaintext client on a TLS port
fails its handshake; it never reaches a handler.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from .config import ConfigError, TLSConfig


def _read(path: str | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}", field=field) from None


def grpc_server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    cert = _read(tls.cert, "config.tls.cert")
    key = _read(tls.key, "config.tls.key")
    ca = _read(tls.client_ca, "config.tls.client_ca")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                       require_client_auth=bool(tls.require_client_cert))


def server_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The HTTP side: TLS 1.2+, client certificates verified when a client CA is given."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls.client_ca:
            ctx.load_verify_locations(cafile=tls.client_ca)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the certificate/key: {e}", field="config.tls.cert") from None
    if tls.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """What a client needs: the CA that signed the server, and its own cert/key for mTLS."""

    ca: str | None = None  # PEM CA bundle; None = the system roots
    cert: str | None = None  # client certificate (mTLS)
    key: str | None = None  # client private key (mTLS)
    server_name: str | None = None  # override the name checked against the server certificate

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca, "--ca"),
                                            private_key=_read(self.key, "--key"),
                                            certificate_chain=_read(self.cert, "--cert"))

    def grpc_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx
