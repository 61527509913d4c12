# The hub's production image. Configure it with CVFLOW_HUB_* variables (docs/configuration.md);
# run `cvflow-hub migrate` once per release (e.g. as an init container) before the replicas.
#
# Every Python package comes from requirements/hub.lock (pinned, with hashes; scripts/lock writes
# it), so two builds install the same versions. git is there for the indexer (docs/indexer.md).
#
#   docker build -t cvflow/hub .
#
# Build arguments (docs/deployment.md, "The container image"; scripts/image-check uses them):
#   BASE             the image both stages start from: Debian with python3 (3.11) and python3-venv
#   INDEX_URL        where pip finds the locked packages (a PyPI mirror; the hashes still decide)
#   EXTRA_INDEX_URL  more indexes, separated by spaces
#   CA_CERT          a CA bundle inside the build for pip to trust (e.g. mounted with -v)
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG INDEX_URL=https://pypi.org/simple
ARG EXTRA_INDEX_URL=""
ARG CA_CERT=""
WORKDIR /src
COPY requirements/hub.lock requirements/
RUN set -eu; \
    python3 -m venv /opt/cvflow; \
    set -- --no-cache-dir --disable-pip-version-check --index-url "$INDEX_URL"; \
    for url in $EXTRA_INDEX_URL; do set -- "$@" --extra-index-url "$url"; done; \
    if [ -n "$CA_CERT" ]; then set -- "$@" --cert "$CA_CERT"; fi; \
    /opt/cvflow/bin/pip install "$@" --require-hashes --no-deps -r requirements/hub.lock
COPY client/ client/
COPY pyproject.toml README.md ./
COPY hub/ hub/
COPY web/ web/
COPY indexer/ indexer/
COPY migrations/ migrations/
# The checkout's two packages, built with the locked setuptools; --no-deps: the lock has the rest.
RUN /opt/cvflow/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps \
        --no-build-isolation ./client . \
 && /opt/cvflow/bin/pip check

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/cvflow-hub cvflow \
 && mkdir -p /var/lib/cvflow-hub && chown cvflow /var/lib/cvflow-hub
COPY --from=build /opt/cvflow /opt/cvflow
ENV PATH=/opt/cvflow/bin:$PATH \
    CVFLOW_HUB_DATA_DIR=/var/lib/cvflow-hub \
    PYTHONUNBUFFERED=1
USER cvflow
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["cvflow-hub", "serve", "--host", "0.0.0.0", "--port", "8000"]
