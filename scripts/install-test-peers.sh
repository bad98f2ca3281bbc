#!/usr/bin/env bash
# Install, from Debian's packages, the peers that the test suite starts itself:
#   - Dovecot (POP3/POP3S), started privately per test session by tests/peers/dovecot.py;
#   - Chromium and chromedriver, for the browser tests;
#   - openssl, handy for debugging TLS by hand (the tests build certificates in Python);
#   - gettext, whose xgettext the translation test uses to find every translatable string;
#   - fonts-noto-cjk, so that Chromium draws Japanese in screenshots instead of empty boxes;
#   - docker-compose, which validates docker-compose.yml (tests/project/test_compose.py) where
#     the Compose v2 plugin (`docker compose`) is not installed: Debian 12 packages only v1.
#
# Contract: idempotent and fast when everything is already installed (one dpkg-query,
# no network); runs as root without a terminal; never leaves a system Dovecot daemon
# listening on 110/995, because the tests run their own instances on free ports and a
# system one would only be an unconfigured surprise on a CI machine.
set -euo pipefail

PACKAGES=(dovecot-core dovecot-pop3d openssl chromium chromium-driver gettext fonts-noto-cjk docker-compose)

if [[ $(id -u) -ne 0 ]]; then
    echo "install-test-peers.sh: must run as root (it uses apt-get)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    # "install ok installed" is the only status that means the package is usable;
    # half-configured or removed-with-config packages must be (re)installed.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-test-peers.sh: all present (${PACKAGES[*]})"
else
    echo "install-test-peers.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive

    # Forbid maintainer scripts from starting daemons (exit 101 = "action not allowed",
    # see invoke-rc.d(8)); restore whatever policy the machine had afterwards.
    policy=/usr/sbin/policy-rc.d
    policy_backup=""
    if [[ -e "$policy" ]]; then
        policy_backup=$(mktemp)
        cp -p "$policy" "$policy_backup"
    fi
    restore_policy() {
        if [[ -n "$policy_backup" ]]; then
            cp -p "$policy_backup" "$policy"
            rm -f "$policy_backup"
        else
            rm -f "$policy"
        fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"

    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
    restore_policy
    trap - EXIT
fi

# Belt and braces: if a system Dovecot runs anyway (installed earlier by someone else,
# or started by an init system that ignores policy-rc.d), stop it and keep it from
# starting at boot. Only the daemon named by the system pid file is touched.
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/dovecot ]]; then
    update-rc.d dovecot disable >/dev/null 2>&1 || true
fi
system_pid_file=/run/dovecot/master.pid
if [[ -s "$system_pid_file" ]]; then
    pid=$(cat "$system_pid_file")
    if kill -0 "$pid" 2>/dev/null; then
        echo "install-test-peers.sh: stopping system dovecot (pid $pid)"
        kill "$pid" || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
fi

command -v dovecot >/dev/null || { echo "dovecot binary missing after install" >&2; exit 1; }
echo "install-test-peers.sh: dovecot $(dovecot --version | cut -d' ' -f1), $(chromium --version 2>/dev/null || echo 'chromium ?')"
