# syntax=docker/dockerfile:1
# One image for every FlowForge process: web (the default command), worker, beat, flower
# and the one-shot migrate; docker-compose.yml and deploy/kubernetes.yaml pick the command,
# the same as the Procfile's.

# Build stage: wheels for every requirement (compilers and headers stay here).
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.txt .
RUN pip wheel --wheel-dir /wheels -r requirements.txt

# Runtime stage: the wheels installed, the code, a user of its own.
FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 flowforge \
    && useradd --system --uid 10001 --gid flowforge --home-dir /home/flowforge --create-home flowforge
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r requirements.txt
# .dockerignore keeps .venv, var/ and .git out.
COPY . .
# The `flowforge` CLI; the packages themselves stay where they are, in /app.
RUN pip install --no-deps -e . \
    && mkdir -p /app/var && chown flowforge:flowforge /app/var
# No collectstatic: WhiteNoise serves static files from the apps' folders (finders).
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "flowforge.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
