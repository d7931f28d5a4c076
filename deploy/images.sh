#!/usr/bin/env bash
# Builds the four service images from deploy/Dockerfile (make images).
#
#   deploy/images.sh                 # on the official python:3.11-slim-bookworm
#   PYTHON_IMAGE=debian deploy/images.sh   # on a base built from Debian's packages
#
# Environment: CONTAINER_ENGINE (docker or podman; default whichever answers),
# PYTHON_IMAGE (the base: an image name, or `debian` for deploy/base/build-base.sh's
# image, built first when missing), EARLYHELP_IMAGE_TAG (default dev), EXTRA_CA_FILE
# (a PEM bundle for a TLS-inspecting proxy, handed to the build as a secret; default
# $SSL_CERT_FILE when that is set, else the host's /etc/ssl/certs/ca-certificates.crt).
# Prints each image's size, and what takes the room in one of them.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=$(deploy/engine.sh)
tag=${EARLYHELP_IMAGE_TAG:-dev}
python_image=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
if [ "$python_image" = debian ]; then
    python_image=localhost/earlyhelp-python:3.11-bookworm
    deploy/base/build-base.sh "$engine" "$python_image"
fi
extra_ca=${EXTRA_CA_FILE:-${SSL_CERT_FILE:-}}
# Else the host's own bundle, which trusts whatever proxy CA the host was given.
[ -z "$extra_ca" ] && [ -s /etc/ssl/certs/ca-certificates.crt ] && extra_ca=/etc/ssl/certs/ca-certificates.crt
secret=()
if [ -n "$extra_ca" ]; then
    secret=(--secret "id=extra_ca,src=$extra_ca")
    echo "pip inside the build trusts the CA bundle $extra_ca (build secret, not stored in the image)"
fi
podman_options=()
if [ "$engine" = podman ]; then
    # Docker format keeps the HEALTHCHECK; host networking is the simplest that
    # works where the only way out is a proxy.
    # The ulimit: see deploy/podman/containers.conf.
    podman_options=(--format docker --network=host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)")
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
fi

for service in intake allocation caseplan notifications; do
    started=$(date +%s)
    "$engine" build --quiet -f deploy/Dockerfile --target "$service" \
        --build-arg "PYTHON_IMAGE=$python_image" "${secret[@]}" "${podman_options[@]}" \
        -t "earlyhelp-$service:$tag" . >/dev/null
    echo "built earlyhelp-$service:$tag in $(( $(date +%s) - started )) s"
done

echo
echo "image sizes (target: under 250 MB each; the four share every layer but their last):"
for service in intake allocation caseplan notifications; do
    bytes=$("$engine" image inspect --format '{{.Size}}' "earlyhelp-$service:$tag")
    printf '  earlyhelp-%-14s %4d MB\n' "$service:$tag" $(( bytes / 1000000 ))
done
base_bytes=$("$engine" image inspect --format '{{.Size}}' "$python_image")
printf '  of which the base %s: %d MB\n' "$python_image" $(( base_bytes / 1000000 ))
echo "largest installed packages in the image's virtual environment:"
"$engine" run --rm --network=none ${podman_options:+--ulimit host --no-healthcheck} --entrypoint sh "earlyhelp-intake:$tag" -c \
    'du -sk /opt/earlyhelp/lib/python3.11/site-packages/* | sort -rn | head -8' \
    | awk '{ n = split($2, p, "/"); printf "  %6.1f MB  %s\n", $1 / 1000, p[n] }'
