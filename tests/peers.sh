#!/bin/sh
# Installs the real peers the black-box tests talk to (Debian packages), only
# when one is missing: radclient and FreeRADIUS, aiosmtpd, redis-server,
# slapd with ldap-utils, radsecproxy; and cargo-deb with dpkg-dev for the packaging test.
# Needs root (or sudo) the first time.
set -eu
# cargo-deb is a cargo tool, not an apt package; pinned to a version known to
# build with the project's rustc.
cargo deb --version >/dev/null 2>&1 || cargo install --locked cargo-deb --version 3.8.0
missing=""
command -v radclient >/dev/null 2>&1 || missing="$missing freeradius-utils"
command -v freeradius >/dev/null 2>&1 || missing="$missing freeradius"
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing="$missing python3-aiosmtpd"
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing="$missing slapd"
command -v ldapadd >/dev/null 2>&1 || missing="$missing ldap-utils"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
/usr/bin/python3 -c 'import websocket' >/dev/null 2>&1 || missing="$missing python3-websocket"
# [email] timezone reads the system's time-zone data (jiff).
[ -e /usr/share/zoneinfo/Asia/Kolkata ] || missing="$missing tzdata"
# The second RadSec client of tests/integration/radsec.rs.
[ -x /usr/sbin/radsecproxy ] || missing="$missing radsecproxy"
# cargo-deb computes Depends with dpkg-shlibdeps.
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing="$missing dpkg-dev"
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "installing test peers:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Debian's freeradius package would start the system service; tests run their own.
$SUDO apt-get install -y -q --no-install-recommends $missing
