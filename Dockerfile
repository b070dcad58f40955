# Antaca's image: `docker build -t antaca .` (compose.yaml runs it with PostgreSQL 16).
# Multi-stage: the build stage compiles wheels with the versions of constraints.txt; the runtime
# stage installs only the service's packages (no compiler, no test package) and runs as a user
# without privileges.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY antaca_auth antaca_auth
COPY antaca_api antaca_api
COPY bench bench
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

FROM python:3.11-slim-bookworm AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    ANTACA_HOST=0.0.0.0 ANTACA_KEY_DIR=/var/lib/antaca/keys ANTACA_SQL_DIR=/opt/antaca/sql
RUN useradd --system --uid 10001 --home-dir /var/lib/antaca --create-home antaca \
    && install -d -o antaca -m 0700 /var/lib/antaca/keys
COPY --from=build /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-index --find-links /wheels -c /tmp/constraints.txt antaca \
    && rm -rf /wheels /tmp/constraints.txt
# The migrations (antaca_auth/migrations.py reads ANTACA_SQL_DIR).
WORKDIR /opt/antaca
COPY sql sql
USER antaca
EXPOSE 8080 8443 8583
# Set ANTACA_DATABASE_URL (compose.yaml does); without it the service starts an embedded
# PostgreSQL inside the container, whose data goes with the container: for a first look only.
ENTRYPOINT ["antaca"]
CMD ["serve"]
