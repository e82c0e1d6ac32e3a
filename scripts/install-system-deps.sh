#!/bin/sh
# Install the Debian packages nbedge's demo and tests need, only those that are missing.
# Uses sudo when not run as root. Safe to run again: it does nothing when all are present.
set -eu

missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
command -v mosquitto_sub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
# The BLE integration test runs BlueZoo (a mock BlueZ) on a private D-Bus daemon.
command -v dbus-daemon >/dev/null 2>&1 || missing="$missing dbus-daemon"
# The central API's tests start throw-away PostgreSQL clusters with initdb and pg_ctl, which
# Debian keeps out of PATH, under /usr/lib/postgresql/<version>/bin.
has_postgres=""
for bin in /usr/lib/postgresql/*/bin; do
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && has_postgres=yes
done
[ -n "$has_postgres" ] || missing="$missing postgresql"
# The console's tests drive Debian's Chromium through Playwright; the CJK fonts draw Chinese.
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 \
    || missing="$missing fonts-noto-cjk"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "nbedge: please install these Debian packages as root:$missing" >&2
    exit 1
fi

echo "nbedge: installing Debian packages:$missing"
$as_root apt-get update -qq
# shellcheck disable=SC2086  # the list is meant to split into words
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends $missing
# Debian starts a system-wide mosquitto on port 1883 and a PostgreSQL cluster on 5432 where
# systemd runs; the demo and the tests start their own, on free ports.
