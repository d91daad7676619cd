#!/usr/bin/env bash
# The programs the tests use as real readers, besides Python packages: exiftool (sidecars) and chromium (the
# HTML report and review pages). As root on Debian/Ubuntu they are installed; elsewhere this says what is
# missing and the tests that need them skip with that reason.
set -u
pkgs=()
command -v exiftool >/dev/null 2>&1 || pkgs+=(libimage-exiftool-perl)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || pkgs+=(chromium)
[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1; } \
        || echo "tests/system-deps.sh: could not install ${pkgs[*]}; the tests that need them will skip" >&2
else
    echo "tests/system-deps.sh: not installed: ${pkgs[*]} (install them to run every test; those tests skip meanwhile)" >&2
fi
exit 0
