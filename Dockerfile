# gangplace container image: the wheel (with its native core) built in one stage, installed into a
# slim runtime in the next. `make image` builds it (see docs/image.md).
#
# BASE is any image with CPython 3.11 at the same path in both stages (the runtime copies the
# builder's virtualenv): the official python:3.11-slim-bookworm, or a Debian bookworm root file
# system with python3 and python3-venv (the test makes one with mmdebstrap, since no registry is
# reachable from its machines). The builder installs gcc / python3-dev with apt when missing.
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (never stored in a layer):
#   buildah bud --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt ...   (deploy/image/build.sh does)
RUN --mount=type=secret,id=pip_cert,required=false set -eux; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    if ! command -v gcc >/dev/null || ! python3 -c "import sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')"; then \
      apt-get update; apt-get install -y --no-install-recommends gcc libc6-dev python3-dev; rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/gangplace; \
    /opt/gangplace/bin/pip install -q --upgrade pip setuptools wheel "numpy>=2.0,<2.6" "cython>=3.0"
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY csrc csrc
COPY engine engine
COPY service service
COPY proto proto
RUN --mount=type=secret,id=pip_cert,required=false set -eux; \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/gangplace/bin/pip wheel -q --no-deps --no-build-isolation -w /dist .; \
    /opt/gangplace/bin/pip install -q /dist/gangplace-*.whl; \
    /opt/gangplace/bin/gangplace --version

FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gangplace" \
      org.opencontainers.image.description="Topology-aware gang placement engine for AI workloads on Kubernetes (HTTP extender + gRPC)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/gangplace/gangplace"
COPY --from=build /opt/gangplace /opt/gangplace
# 65532: the conventional non-root uid of distroless images; deploy/ runs the pod as this user.
RUN set -eux; \
    (getent group gangplace || groupadd --gid 65532 gangplace); \
    (getent passwd gangplace || useradd --uid 65532 --gid 65532 --home-dir /var/lib/gangplace --create-home --shell /usr/sbin/nologin gangplace); \
    mkdir -p /var/lib/gangplace/state /var/cache/gangplace/numba; \
    chown -R 65532:65532 /var/lib/gangplace /var/cache/gangplace
ENV PATH=/opt/gangplace/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/gangplace/numba \
    XDG_STATE_HOME=/var/lib/gangplace/state \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /var/lib/gangplace
EXPOSE 8888 50051 9090
ENTRYPOINT ["gangplace"]
CMD ["--help"]
