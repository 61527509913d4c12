# The hub's production image. Configure it with CVFLOW_HUB_* variables (docs/configuration.md);
# run `cvflow-hub migrate` once per release (e.g. as an init container) before the replicas.
FROM python:3.11-slim AS build
WORKDIR /src
COPY client/ client/
COPY pyproject.toml README.md alembic.ini ./
COPY hub/ hub/
COPY web/ web/
COPY indexer/ indexer/
COPY migrations/ migrations/
RUN python -m venv /opt/cvflow \
 && /opt/cvflow/bin/pip install --no-cache-dir ./client . \
 && cp -r alembic.ini migrations /opt/cvflow/

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /var/lib/cvflow-hub cvflow \
 && mkdir -p /var/lib/cvflow-hub && chown cvflow /var/lib/cvflow-hub
COPY --from=build /opt/cvflow /opt/cvflow
ENV PATH=/opt/cvflow/bin:$PATH \
    CVFLOW_HUB_DATA_DIR=/var/lib/cvflow-hub \
    PYTHONUNBUFFERED=1
USER cvflow
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["cvflow-hub", "serve", "--host", "0.0.0.0", "--port", "8000"]
