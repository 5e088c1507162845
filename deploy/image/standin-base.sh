#!/usr/bin/env bash
# LOCAL STAND-INS for two official images, made from Debian's own packages, for machines that
# reach Debian's and PyPI's registries but not Docker Hub (our CI). Users build the Dockerfile
# with `docker build` on the real images; these exist only so that `make image-test` can build
# the same Dockerfile, unchanged, and run deploy/compose.yaml's Redis here.
#
# 1. docker.io/library/python:3.11-slim-bookworm (the Dockerfile's base): debootstrap of
#    bookworm. What it gives, as the official image does: Debian bookworm, python3 (3.11) with
#    pip and venv, `python` and `pip` in /usr/local/bin, ca-certificates, netbase, tzdata,
#    passwd (groupadd/useradd: debian:bookworm-slim has it, debootstrap's minbase does not),
#    PATH (the official image's, /usr/sbin included) and LANG. What differs: Debian's python3
#    (3.11.2) instead of a python.org build in /usr/local, Debian's pip 23.0, a larger image
#    (~200 MB against ~130 MB), and no `EXTERNALLY-MANAGED` marker (removed: the official
#    image has none, and the Dockerfile installs with pip outside a venv).
# 2. docker.io/library/redis:7.2-bookworm (compose.yaml's Redis): Debian's redis-server 7.0
#    on stand-in 1, with the official image's interface (standin-redis/Containerfile).
#
# Each is skipped when an image of that name exists (a real one pulled on a workstation is
# just as good). Fresh: ~80 s, then ~10 s; cached: instant.
#
# Usage: deploy/image/standin-base.sh [--force]
set -euo pipefail

PYTHON_IMAGE="docker.io/library/python:3.11-slim-bookworm"
REDIS_IMAGE="docker.io/library/redis:7.2-bookworm"
HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
FORCE="${1:-}"

wanted() {
    if [ "$FORCE" != "--force" ] && podman image exists "$1"; then
        echo "stand-in: $1 already present, kept"
        return 1
    fi
}

if wanted "$PYTHON_IMAGE"; then
    ROOTFS="$(mktemp -d /tmp/leadgate-standin.XXXXXX)"
    trap 'rm -rf "$ROOTFS" "$ROOTFS.log"' EXIT
    echo "stand-in: debootstrap bookworm for $PYTHON_IMAGE"
    started=$SECONDS
    # timeout: a stalled mirror must fail the run, not hang it.
    timeout 600 debootstrap --variant=minbase \
        --include=python3,python3-pip,python3-venv,ca-certificates,netbase,tzdata,passwd \
        bookworm "$ROOTFS" >"$ROOTFS.log" 2>&1 || {
        tail -20 "$ROOTFS.log" >&2
        echo "stand-in: FAIL: debootstrap (log above)" >&2
        exit 1
    }
    rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
    # As in the official slim images: no apt lists, no package caches.
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/cache/apt/archives/*.deb
    tar -C "$ROOTFS" -c . | podman import --quiet \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "leadgate CI stand-in for $PYTHON_IMAGE (deploy/image/standin-base.sh)" \
        - "$PYTHON_IMAGE" >/dev/null
    echo "stand-in: $PYTHON_IMAGE imported in $((SECONDS - started)) s" \
        "($(podman run --rm --network none "$PYTHON_IMAGE" python --version))"
fi

if wanted "$REDIS_IMAGE"; then
    started=$SECONDS
    # The host's CA bundle for apt's https sources, if any (as for the Dockerfile's build);
    # mounted for the RUN steps only, it does not end up in the image.
    timeout 600 podman build --pull=never --quiet \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        -t "$REDIS_IMAGE" "$HERE/standin-redis" >/dev/null
    echo "stand-in: $REDIS_IMAGE built in $((SECONDS - started)) s" \
        "($(podman run --rm --network none "$REDIS_IMAGE" redis-server --version | cut -d' ' -f1-3))"
fi
