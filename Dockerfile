# The bullyproof image, for docker-compose.yml and the Kubernetes manifests: one image runs nodes and
# the store (`bullyproof node|store ...`). Two stages: `build` makes a virtualenv holding exactly the
# pinned dependencies (requirements.lock, wheels only, nothing compiled) and the project; the final
# image copies only that virtualenv onto the same slim base: no pip, no setuptools, no compiler, no
# package caches. It runs as an unprivileged user (uid 10001) that owns only /var/lib/bullyproof.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/bullyproof
COPY requirements.lock /src/
RUN /opt/bullyproof/bin/pip install --no-deps --only-binary=:all: -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY node /src/node
COPY chaos /src/chaos
RUN /opt/bullyproof/bin/pip install --no-deps /src \
 && /opt/bullyproof/bin/pip check \
 && /opt/bullyproof/bin/pip uninstall --yes --quiet pip setuptools

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 bullyproof \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/bullyproof --no-create-home bullyproof \
 && mkdir -p /var/lib/bullyproof \
 && chown 10001:10001 /var/lib/bullyproof
COPY --from=build /opt/bullyproof /opt/bullyproof
ENV PATH=/opt/bullyproof/bin:$PATH PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it. A new named volume at /var/lib/bullyproof starts
# as this directory: owned by the user.
USER 10001:10001
WORKDIR /var/lib/bullyproof
EXPOSE 7000 7100 7200 9100
ENTRYPOINT ["bullyproof"]
