# syntax=docker/dockerfile:1
# leadgate: one image for `leadgate serve` (the API) and `leadgate worker` (delivery).
#
#   docker build -t leadgate .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 leadgate                 # the example config
#   docker run --read-only --tmpfs /tmp leadgate worker --config /etc/leadgate/leadgate.yaml
#
# Stage 1 builds wheels of the project (its per-lead modules compiled by mypyc) and of every
# dependency; stage 2 installs them from that directory alone (no index, no compiler, no pip
# cache) and runs as an unprivileged numeric user. At run time the process writes only under
# /tmp (the multiprocess metrics directory of `serve --workers N` is made there), so the root
# file system can be mounted read-only.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# mypyc compiles the per-lead modules into the wheel (setup.py): a C compiler, and Python's
# headers where the base has none (the official python images have them; Debian's python3,
# as on the CI's stand-in, needs python3-dev). This stage only: the runtime stage installs the
# built wheel and has no compiler. Versions: whatever the base's Debian release has.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
    && { python -c 'import pathlib, sysconfig, sys; sys.exit(not pathlib.Path(sysconfig.get_paths()["include"], "Python.h").exists())' \
         || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-dev; } \
    && rm -rf /var/lib/apt/lists/*
# A build that cannot compile fails rather than shipping plain Python.
ENV LEADGATE_COMPILE=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway
# The wheels' digests, kept in the image (below): a record of what was installed, and what
# makes a builder's cache of the install step follow the wheels (podman/buildah key a RUN
# with a bind mount from another stage by its text alone, and would reuse a stale install).
RUN pip wheel --wheel-dir /wheels . && sha256sum /wheels/*.whl > /wheels.sha256

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LEADGATE_CONFIG=/app/examples/leadgate.yaml \
    LEADGATE_HOST=0.0.0.0 \
    LEADGATE_PORT=8080
RUN groupadd --system --gid 10001 leadgate \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent \
       --shell /usr/sbin/nologin leadgate
COPY --from=build /wheels.sha256 /usr/local/share/leadgate/wheels.sha256
# The wheels are mounted from the build stage, not copied: they never become a layer here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/leadgate-*.whl
WORKDIR /app
# Rule packs and the example config at a known path: /app/examples/leadgate.yaml says
# `rules_dir: ../rules`, i.e. /app/rules. The Helm chart mounts its own at /etc/leadgate.
COPY rules ./rules
COPY examples ./examples
USER 10001:10001
# 8080: the API (`serve`); 9101: its /metrics, /healthz, /readyz (LEADGATE_METRICS_PORT);
# 9102: the worker's.
EXPOSE 8080 9101 9102
# Exec form: leadgate is PID 1 and receives SIGTERM itself, so `serve` drains (readyz 503,
# in-flight requests finish within --drain-s) and `worker` finishes its deliveries.
ENTRYPOINT ["leadgate"]
CMD ["serve", "--drain-s", "10"]
