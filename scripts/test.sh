#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts an S3-compatible server
# (moto, from PyPI) on loopback for the S3 tests, installs headless Chromium (Debian) for
# the status-page test, then runs every Rust test, with the crash points of the
# crash-safety tests compiled in (feature `failpoints`).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CECSYNC_TEST_VENV:-target/test-venv}"
mkdir -p target
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "== installing the S3-compatible test server (moto) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi

# Headless Chromium for the status-page test (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium for the status-page test"
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq
  DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq chromium >/dev/null
fi
export CECSYNC_REQUIRE_CHROMIUM=1

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; then break; fi
  sleep 0.2
done
echo "== S3-compatible server on 127.0.0.1:$port"

export CECSYNC_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export CECSYNC_REQUIRE_S3=1
export AWS_ACCESS_KEY_ID=cecsync-test AWS_SECRET_ACCESS_KEY=cecsync-test-secret AWS_REGION=us-east-1

cargo test --locked --no-fail-fast --features failpoints "$@"
