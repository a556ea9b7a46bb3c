#!/usr/bin/env bash
# setup.sh - installs what building and testing Sluice needs on Debian 12, and nothing when
# it is all there (then it prints nothing). Run as root, or as a user with sudo. Works
# without a terminal or standard input (CI=true). SL_SKIP_SETUP=1 skips it.
#
# The one list of the project's system packages. gcc's sanitizer runtimes (libasan8,
# libubsan1, liblsan0, libtsan2) come with build-essential through gcc-12's libgcc-12-dev;
# readelf (tests/e2e/test_install.sh) comes with binutils.
PACKAGES=(
    build-essential # gcc, make, libc headers, binutils, sanitizer runtimes
    cmake           # the build
    pkg-config      # finds libyaml; tests/e2e/test_install.sh
    libyaml-dev     # config files (--conf)
    libxxhash-dev   # key hashing (header-only use)
    librocksdb-dev  # the rocksdb state backend (C API, rocksdb.pc)
    clang-format    # make format, make format-check
    netcat-openbsd  # e2e tests: socket sources
    procps          # e2e tests: ps, pgrep, kill
    python3         # e2e tests: free_port in tests/e2e/lib.sh
    iproute2        # make demo and e2e tests: ss, to see a port listening
    gnuplot-nox     # make bench: the report's PNG plots (pngcairo, no X)
)

set -euo pipefail

if [[ ${SL_SKIP_SETUP:-} == 1 ]]; then
    exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup.sh: not a Debian system; make sure these are installed: ${PACKAGES[*]}" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

as_root=()
if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo -n)
    else
        echo "setup.sh: missing packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${as_root[@]}" apt-get update -q &&
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup.sh: installing ${missing[*]} failed" >&2
    exit 1
fi
