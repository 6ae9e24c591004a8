#!/bin/sh
# Install every apt and pip dependency listed in scripts/deps.txt (idempotent; run as root).
set -eu
cd "$(dirname "$0")/.."
apt_pkgs=$(sed -n 's/^apt: *//p' scripts/deps.txt | tr '\n' ' ')
missing=""
for p in $apt_pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
PYTHON=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore
sed -n 's/^pip: *//p' scripts/deps.txt | while read -r req; do
    # shellcheck disable=SC2086
    "$PYTHON" -m pip install -q --disable-pip-version-check $req
done
