#!/usr/bin/env bash
# Screenshots of each tab of `dopplerdiff app` in headless Chromium (Debian's `chromium` package):
#   docs/app_screenshots.sh RUN [INDEX] [PORT]   -> docs/app_generate.png, app_edit.png, app_identify.png,
#                                                   app_report.png
# Starts the app on 127.0.0.1:PORT (default 7871), waits for it, then docs/app_screenshots.py fills each tab
# (generates; uploads two of the run's training windows to Edit and Identify), presses its button and saves
# the page with the result; checks every screenshot is a PNG, and stops the app.
# DOPPLERDIFF (default: dopplerdiff) is the command, PYTHON (default: python) runs the driver.
set -euo pipefail
run=${1:?usage: docs/app_screenshots.sh RUN [INDEX] [PORT]}
index=${2:-}
port=${3:-7871}
out=$(cd "$(dirname "$0")" && pwd)
cmd=${DOPPLERDIFF:-dopplerdiff}
py=${PYTHON:-python}
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

# two training windows of the run's first identity are the uploads of the Edit and Identify tabs
mapfile -t windows < <($py - "$run" <<'PY'
import json, sys
from pathlib import Path
d = json.loads((Path(sys.argv[1]) / "data.json").read_text())
train = d["split"]["train"]
first = [f for f in train if f.split("/", 1)[0] == train[0].split("/", 1)[0]][:2]
print("\n".join(str(Path(d["data_root"]) / f) for f in first))
PY
)
rm -f "$out"/app_{generate,edit,identify,report}.png
$py "$out/app_screenshots.py" "http://127.0.0.1:$port/" "$out" "${windows[@]}"
for tab in generate edit identify report; do
  png="$out/app_$tab.png"
  [[ -s "$png" && "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] \
    || { echo "error: no screenshot of tab '$tab' ($png)" >&2; exit 1; }
done
rm -f "$out/.app_screenshots.log"
