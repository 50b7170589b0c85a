#!/usr/bin/env bash
# Installs Debian's redis-server when it is missing: as root, or with sudo. Sourced by the scripts
# that need Redis; returns non-zero (with a message) where it cannot install it.
ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  local sudo=''
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "redis-server is missing: install it (apt-get install redis-server) and retry" >&2; return 1; }
    sudo='sudo'
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "redis-server is missing and apt-get is not available: install Redis and retry" >&2; return 1; }
  echo "Installing redis-server (Debian package)..."
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
