# syntax=docker/dockerfile:1
# Build: a virtual environment with the service and its dependencies.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/iwrs
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/iwrs/bin/pip install .

# Run: the environment, the migrations and the example studies; no compiler, no root.
FROM python:3.11-slim
ENV PATH=/opt/iwrs/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IWRS_HOME=/app \
    IWRS_HOST=0.0.0.0 \
    IWRS_PORT=8000 \
    IWRS_KEYS_DIR=/app/keys \
    IWRS_DATABASE_URL=sqlite:////app/data/iwrs.db
RUN useradd --system --uid 10001 --home-dir /app iwrs
COPY --from=build /opt/iwrs /opt/iwrs
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations
COPY studies ./studies
RUN mkdir -p /app/keys /app/data && chown iwrs:iwrs /app/keys /app/data && chmod 700 /app/keys
USER iwrs
EXPOSE 8000
VOLUME ["/app/keys", "/app/data"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"
# Migrations first, then serve; the keys are mounted (or made once with `iwrs keys init`).
CMD ["sh", "-c", "iwrs db upgrade && exec iwrs serve"]
