#!/usr/bin/env bash
# Builds the hub's Python base image from Debian's packages, for machines that
# cannot pull python:3.11-slim-bookworm (no registry reachable, as on the
# project's own machines). bookworm's Python is 3.11, the hub's.
#
#   deploy/base/build-base.sh [ENGINE] [TAG]
#
# ENGINE is podman or docker (default: whichever answers), TAG the image name
# (default localhost/earlyhelp-python:3.11-bookworm). The image carries a label
# with a hash of this script: when an image of that tag with the same label is
# already there, nothing is built (a rerun on the same machine takes a second;
# change the recipe and the hash changes). Needs root and mmdebstrap.
set -euo pipefail

engine=${1:-}
tag=${2:-localhost/earlyhelp-python:3.11-bookworm}
suite=bookworm
# minbase + Python, venv (whose ensurepip gives the builder stage its pip) and
# the CA bundle. No compilers: every hub dependency has a wheel for
# linux/amd64 (manylinux). apt stays, for images that add Debian packages.
packages=python3,python3-venv,python-is-python3,ca-certificates

if [ -z "$engine" ]; then
    engine=$("$(dirname "$0")/../engine.sh")
fi
recipe=$(sha256sum "$0" | cut -c1-16)

if [ "$("$engine" image inspect --format '{{ index .Labels "org.earlyhelp.base-recipe" }}' "$tag" 2>/dev/null || true)" = "$recipe" ]; then
    echo "base image $tag (recipe $recipe) is already built: reusing it"
    exit 0
fi

command -v mmdebstrap >/dev/null 2>&1 || {
    echo "mmdebstrap is needed: apt-get install mmdebstrap" >&2
    exit 1
}

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
started=$(date +%s)
echo "building base image $tag from Debian $suite packages with mmdebstrap ..."
# Recommends are left out; so are docs, man pages, locales, apt's lists and
# caches. /usr is merged by mmdebstrap's own hook, as debootstrap does, rather
# than by the usrmerge package, which would bring the whole of Perl (50 MB).
mmdebstrap --quiet --variant=minbase --include="$packages" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$workdir/rootfs.tar"
"$engine" import \
    --change "LABEL org.earlyhelp.base-recipe=$recipe" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$workdir/rootfs.tar" "$tag" >/dev/null
echo "base image $tag built in $(( $(date +%s) - started )) s"
