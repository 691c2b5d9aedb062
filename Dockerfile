# syntax=docker/dockerfile:1
# livechat-notifier: the Kafka worker as a slim, non-root image that runs on a read-only root
# filesystem (it writes no files).
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#       -t livechat-notifier:0.1.0 .
#   docker run --read-only livechat-notifier:0.1.0 --help
#
# The build stage installs the hash-pinned lock (requirements.lock) and then the project into
# /opt/venv with deploy/docker/build-venv.sh, the same script CI runs (tests/contract) since no
# container engine runs there. The runtime stage copies that venv onto the same base image.
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz on port 8080 (deploy/helm).

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY deploy/docker/build-venv.sh requirements.lock ./
RUN sh build-venv.sh deps /opt/venv requirements.lock
COPY pyproject.toml README.md ./
COPY service/ service/
RUN sh build-venv.sh project /opt/venv /src

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="livechat-notifier" \
      org.opencontainers.image.description="Pushes live-chat handoff requests to agents' phones (FCM/APNs) and reports chats nobody accepted in time" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it; no home, no login shell.
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin notifier
COPY --from=build /opt/venv /opt/venv
# The venv's .pyc files were compiled at install time, so nothing is written at start-up.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["livechat-notifier"]
CMD ["run"]
