# tokenledger's production image: the package installed at build time, run as a non-root user.
#
#   docker build -t tokenledger:0.1.0 .                     # or: docker compose -f compose/production.yml build
#   docker run --rm tokenledger:0.1.0 tokenledger --help
#
# Stage 1 builds the wheel from the sources and installs it with its dependencies into a virtual
# environment; stage 2 copies only that environment into a fresh slim image (no sources, no build
# tools, no pip run at container start). Compose files run `tokenledger ...` commands in it.
# The build context is limited by .dockerignore to what the wheel needs.

# One base for both stages: the environment built in stage 1 runs on the same interpreter at the same path.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# what the wheel is made of: the project metadata, the packages, and schemas/ (ledger/avsc links to it)
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY ledger ./ledger
COPY processors ./processors
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/tokenledger \
 && /opt/tokenledger/bin/pip install /dist/tokenledger-*.whl

FROM ${PYTHON_IMAGE}
# a fixed numeric uid/gid (10001): volume ownership stays stable across rebuilds, and orchestrators that
# require a non-root user (runAsNonRoot) can check it without resolving a name
RUN groupadd --system --gid 10001 tokenledger \
 && useradd --system --uid 10001 --gid tokenledger --home-dir /home/tokenledger --create-home \
      --shell /usr/sbin/nologin tokenledger \
 && mkdir /state \
 && chown tokenledger:tokenledger /state
COPY --from=build /opt/tokenledger /opt/tokenledger
# TOKENLEDGER_HOME: where the compose `init` service creates the shared ledger home (a named volume on /state
# takes the directory's owner from the image, so the non-root user can write it)
ENV PATH=/opt/tokenledger/bin:$PATH \
    TOKENLEDGER_HOME=/state/home \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /state
# fail the build, not the first container start, if the installed command cannot load
RUN tokenledger --help > /dev/null
EXPOSE 8787
CMD ["tokenledger", "--help"]
