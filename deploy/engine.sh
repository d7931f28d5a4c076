#!/bin/sh
# Prints the container engine to use: $CONTAINER_ENGINE if set, else docker when
# its daemon answers, else podman when it is installed. Exits 1 when neither can
# build. (A docker client without a daemon, as on the project's machines, does not count.)
set -eu
if [ -n "${CONTAINER_ENGINE:-}" ]; then
    echo "$CONTAINER_ENGINE"
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
elif command -v podman >/dev/null 2>&1; then
    echo podman
else
    echo "no container engine: install docker, or podman and runc (apt-get install podman runc)" >&2
    exit 1
fi
