# syntax=docker/dockerfile:1
# One image for every service of the 1TT Platform; the Deployments choose the service:
#   docker build -t onett-platform:0.1.0 .            # tag = version in pyproject.toml
#   docker run onett-platform:0.1.0 services.ingest.main
#   docker run onett-platform:0.1.0 services.cli.main --help   # the 1tt command (default)
# deploy/k8s references it as `onett-platform`; each overlay sets the tag (and registry).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the pinned dependencies in a virtual environment, and the protobuf code.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock ./
# requirements.lock pins the full set, development tools included (`make lock`). The image
# takes the runtime part: pyproject.toml's [project] dependencies, every package of their
# closure at exactly the version the lock pins (the lock as a constraints file).
RUN pip install "pip==26.3" "setuptools==80.9.0" \
 && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > runtime-requirements.txt \
 && pip install --requirement runtime-requirements.txt --constraint requirements.lock
# The pipeline's native part (native/textcore), built from its locked crates with Rust from
# rustup (a compiler in the builder only; the runtime image gets the built extension).
ARG RUST_VERSION=1.95.0
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo
RUN apt-get update && apt-get install -y --no-install-recommends curl gcc libc6-dev \
 && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain "${RUST_VERSION}" \
 && rm -rf /var/lib/apt/lists/*
COPY native/textcore/ native/textcore/
RUN pip install "maturin==1.15.0" \
 && PATH=/opt/cargo/bin:$PATH MATURIN_PEP517_ARGS="--locked" \
    pip install --no-deps --no-build-isolation ./native/textcore \
 && pip uninstall --yes maturin
# Generated code, exactly as `make proto` generates it (never copied from a checkout).
COPY proto/ proto/
RUN mkdir -p gen/python \
 && python -m grpc_tools.protoc -I proto --python_out=gen/python --pyi_out=gen/python --grpc_python_out=gen/python $(find proto -name '*.proto')
COPY services/ services/
# Bytecode now: the root filesystem is read-only at run time.
RUN python -m compileall -q --invalidation-mode unchecked-hash services gen/python

# --- runtime: the venv, the services and gen/python; no compiler, no pip cache, not root.
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="onett-platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.description="1TT Platform services: ingest, preprocess, ledger, payout, and the 1tt CLI"
RUN groupadd --system --gid 10001 onett \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin onett
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /src/services /app/services
COPY --from=builder /src/gen/python /app/gen/python
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TT_RUN_DIR=/run/onett
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["python", "-m"]
CMD ["services.cli.main", "--help"]
