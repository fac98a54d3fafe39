# syntax=docker/dockerfile:1
# The scimflow worker image (docs/operations.md, "Workers on Kubernetes or Docker"): the project and the exact
# dependencies of uv.lock in /opt/scimflow, run as an unprivileged user.
#
#   docker build -t registry.example.com/scimflow:0.1.0 .
#   docker run --rm -e PREFECT_API_URL=http://prefect.internal:4200/api registry.example.com/scimflow:0.1.0
#
# Two uses, one image:
# - a process worker: the default command, `prefect worker start` on the scimflow-process pool (pass other
#   `prefect worker start ...` arguments to change the pool or its type);
# - the job image of a Kubernetes (or Docker) work pool: the worker starts each flow run's container with the
#   flow-run command as the container's arguments. That replaces this CMD, which is why the worker is the
#   default command and not an ENTRYPOINT (an ENTRYPOINT would be put in front of the flow-run command).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/scimflow/.venv
WORKDIR /opt/scimflow
# The dependencies alone first: this layer changes only when uv.lock does. --frozen: exactly the lock, never
# re-resolved; --no-dev: no test tools in the image.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# Then the project (what .dockerignore lets through: the code, the rules, prefect.yaml, the docs).
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 scimflow \
    && useradd --system --uid 10001 --gid scimflow --home-dir /home/scimflow --create-home \
       --shell /usr/sbin/nologin scimflow
# Owned by root and read-only to the worker: flows cannot change their own code. State, plan files and the
# Prefect home go elsewhere (PostgreSQL, a volume at out_dir, the user's home).
COPY --from=build /opt/scimflow /opt/scimflow
WORKDIR /opt/scimflow
ENV PATH=/opt/scimflow/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PREFECT_HOME=/home/scimflow/.prefect \
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY=60
USER 10001:10001
CMD ["prefect", "worker", "start", "--pool", "scimflow-process", "--type", "process"]
