# campaign-queue: the production image (Cloud Run, Fly.io). No dev dependencies, non-root,
# the code owned by root and read-only to the user that runs it.
#
# Start-up: `python -m app serve` checks the settings (one line naming any missing or invalid
# one, exit 2) and starts uvicorn on 0.0.0.0:$PORT (8080 unless the platform sets PORT).
# Readiness: GET /healthz answers 200 when the database answers, 503 when it does not. The
# platforms probe it themselves (Cloud Run: --startup-probe; Fly: [[http_service.checks]] in
# fly.toml); there is no HEALTHCHECK here, since OCI image builds (Cloud Build, buildah,
# Fly's builders) drop it and neither platform reads it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The same uv as run.py's UV_VERSION (tests/test_setup.py checks they agree).
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3
WORKDIR /srv
# Dependencies alone first: this layer changes only when pyproject.toml or uv.lock do
# (not with README.md or a source file).
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
# Then the project itself. pyproject names README.md as the readme, which the project's
# build (hatchling, editable) reads, so it comes in with the sources.
COPY README.md ./
COPY sql ./sql
COPY app ./app
COPY deploy/fly_trigger.py ./deploy/fly_trigger.py
RUN uv sync --frozen --no-dev \
 && python -m compileall -q --invalidation-mode unchecked-hash app deploy

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
WORKDIR /srv
# No --chown: everything stays root's (files 644, folders 755), so the service cannot change
# its own code. The service writes nothing to disk: no folder belongs to the user.
COPY --from=build /srv /srv
ENV PATH="/srv/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=8080
USER app
EXPOSE 8080
CMD ["python", "-m", "app", "serve"]
