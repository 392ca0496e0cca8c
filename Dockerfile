# One image per service: docker build --build-arg SERVICE=edge -t switchyard-edge .
# Each image installs only that service's locked dependencies (the edge carries no
# ClickHouse engine, metering no web server).
FROM python:3.11-slim AS base
ARG SERVICE
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /app
RUN pip install --no-cache-dir "uv>=0.5"
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/edge/pyproject.toml services/edge/pyproject.toml
COPY services/router/pyproject.toml services/router/pyproject.toml
COPY services/keyvault/pyproject.toml services/keyvault/pyproject.toml
COPY services/metering/pyproject.toml services/metering/pyproject.toml
COPY stack/pyproject.toml stack/pyproject.toml
RUN test -n "$SERVICE" && uv sync --frozen --no-dev --package "switchyard-${SERVICE}"
COPY shared shared
COPY services services
RUN useradd --system --uid 10001 switchyard && mkdir -p /data && chown switchyard /data
USER switchyard
ENV PATH=/app/.venv/bin:$PATH PYTHONPATH=/app GATEWAY_DATA_DIR=/data SERVICE=${SERVICE}
CMD ["sh", "-c", "exec python -m services.${SERVICE}"]
