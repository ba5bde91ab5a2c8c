#!/usr/bin/env bash
# Screenshots for docs/tracking.md (optional; needs the tracking extra and Debian's `chromium`):
#   docs/screenshots.sh RUN        (RUN trained with --report-to tensorboard, e.g. `dopplerdiff run -p smoke`)
# writes docs/tensorboard.png (TensorBoard's time series: scalars and validation grids) and
# docs/report_phone.png (RUN/eval/report.html at 390 px width).
set -euo pipefail
run=${1:?usage: docs/screenshots.sh RUN}
here=$(cd "$(dirname "$0")" && pwd)
port=${PORT:-6006}
shot() {  # url out width height
  # a profile of its own per shot: a second chromium would otherwise hand its URL to the first one
  profile=$(mktemp -d)
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=${BUDGET_MS:-30000} \
    --user-data-dir="$profile" --window-size="$3,$4" --screenshot="$2" "$1" 2>/dev/null
  rm -rf "$profile"
}
tensorboard --logdir "$run" --port "$port" --host 127.0.0.1 >/dev/null 2>&1 &
tb=$!
trap 'kill $tb' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port" >/dev/null && break; sleep 1; done
shot "http://127.0.0.1:$port/?forceSVG=true&tagFilter=${TAGS:-train/loss|val/psnr|val/grid|val/reconstructions}#timeseries" "$here/tensorboard.png" 1400 1000
if [ -f "$run/eval/report.html" ]; then
  shot "file://$(cd "$run/eval" && pwd)/report.html" "$here/report_phone.png" 390 1600
fi
