#!/bin/sh
# Builds the worker's virtualenv the one way the image does it. The Dockerfile's build stage runs
# this script, and so does CI (tests/contract/test_image_build.py), which has no container engine:
# that is how CI knows the image's install steps work.
#
#   build-venv.sh deps VENV LOCKFILE     new venv + the hash-pinned lock, wheels only (no compiler)
#   build-venv.sh project VENV SRC_DIR   the project itself, offline, without build isolation
#
# The interpreter is $PYTHON (default python3); it must be the image's Python minor version.
set -eu

usage() { echo "usage: build-venv.sh deps VENV LOCKFILE | project VENV SRC_DIR" >&2; exit 64; }
[ $# -eq 3 ] || usage
step=$1 venv=$2 source=$3

case "$step" in
  deps)
    "${PYTHON:-python3}" -m venv "$venv"
    # --require-hashes also refuses any dependency the lock does not list.
    "$venv/bin/python" -m pip install --quiet --require-hashes --only-binary=:all: -r "$source"
    ;;
  project)
    # Everything it needs is already installed from the lock: no index, no resolution.
    "$venv/bin/python" -m pip install --quiet --no-index --no-deps --no-build-isolation "$source"
    "$venv/bin/python" -m pip check
    ;;
  *) usage ;;
esac
