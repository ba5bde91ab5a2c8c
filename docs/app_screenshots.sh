#!/usr/bin/env bash
# Screenshots of each tab of `dopplerdiff app` in headless Chromium (Debian's `chromium` package):
#   docs/app_screenshots.sh RUN [INDEX] [PORT]   -> docs/app_generate.png, app_edit.png, app_identify.png,
#                                                   app_report.png
# Starts the app on 127.0.0.1:PORT (default 7871), waits for it, opens each tab by its ?tab= link, checks
# every screenshot is a non-empty PNG, and stops the app. DOPPLERDIFF (default: dopplerdiff) is the command.
set -euo pipefail
run=${1:?usage: docs/app_screenshots.sh RUN [INDEX] [PORT]}
index=${2:-}
port=${3:-7871}
out=$(cd "$(dirname "$0")" && pwd)
cmd=${DOPPLERDIFF:-dopplerdiff}
command -v chromium >/dev/null || { echo "error: chromium not found (apt-get install -y chromium)" >&2; exit 2; }

args=(app --run "$run" --port "$port")
[[ -n "$index" ]] && args+=(--index "$index")
$cmd "${args[@]}" >"$out/.app_screenshots.log" 2>&1 &
app_pid=$!
trap 'kill "$app_pid" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
  kill -0 "$app_pid" 2>/dev/null || { cat "$out/.app_screenshots.log" >&2; exit 1; }
  sleep 1
done

for tab in generate edit identify report; do
  png="$out/app_$tab.png"
  rm -f "$png"
  profile=$(mktemp -d)  # a profile per shot: a second chromium would hand its URL to the first one
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=8000 \
    --user-data-dir="$profile" --window-size=1200,900 --screenshot="$png" "http://127.0.0.1:$port/?tab=$tab" \
    >/dev/null 2>&1
  rm -rf "$profile"
  [[ -s "$png" && "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] \
    || { echo "error: no screenshot of tab '$tab' ($png)" >&2; exit 1; }
  echo "wrote $png"
done
rm -f "$out/.app_screenshots.log"
