#!/usr/bin/env bash
# Installs the Debian packages the scripts need when they are missing: as root, or with sudo.
# Sourced by the scripts that need them; each function returns non-zero (with a message) where it
# cannot install what is missing.

# ensure_commands <command> <package> [<command> <package> ...]
ensure_commands() {
  local missing=()
  while [ "$#" -ge 2 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=''
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "missing: ${missing[*]}: install them (apt-get install ${missing[*]}) and retry" >&2; return 1; }
    sudo='sudo'
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "missing: ${missing[*]}, and apt-get is not available: install them and retry" >&2; return 1; }
  echo "Installing ${missing[*]} (Debian packages)..."
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # The packages' own services are not wanted: the tests start their own servers on free ports.
  if command -v service >/dev/null 2>&1; then
    for service in redis-server nginx; do $sudo service "$service" stop >/dev/null 2>&1 || true; done
  fi
}

ensure_redis() {
  ensure_commands redis-server redis-server
}

# Everything the test suite runs: Redis, and for the live page's browser test Chromium and nginx.
ensure_test_packages() {
  ensure_commands redis-server redis-server chromium chromium nginx nginx
}
