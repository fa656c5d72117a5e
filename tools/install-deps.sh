#!/usr/bin/env bash
# Installs the Debian 12 packages vlmd builds and tests with. Idempotent; needs root (or sudo).
set -euo pipefail
pkgs=(
  build-essential pkg-config meson ninja-build python3
  check liburing-dev libdlpack-dev libjansson-dev libpcre2-dev libutf8proc-dev
  libsystemd-dev libmicrohttpd-dev libcurl4-openssl-dev
  libjpeg62-turbo-dev libpng-dev libwebp-dev libssl-dev
  systemd util-linux
  spin
  clang libclang-rt-14-dev
  python3-numpy python3-pil python3-venv python3-pip python3-setuptools
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
