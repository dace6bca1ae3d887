#!/bin/sh
# Render a report's report.html in a real headless browser (Debian's chromium) and save a screenshot,
# to see that the self-contained HTML renders with its embedded figures.
#
#   scripts/screenshot_report.sh [REPORT_HTML] [SCREENSHOT_PNG] [WIDTH,HEIGHT]
#   defaults: report/report.html  report/screenshot.png  1200,3000
#
# Needs chromium (Debian: apt-get install chromium).  Run `make report` first for the default path.
set -eu
html=${1:-report/report.html}
png=${2:-report/screenshot.png}
size=${3:-1200,3000}
command -v chromium >/dev/null 2>&1 || { echo "chromium is not installed (Debian: apt-get install chromium)" >&2; exit 3; }
[ -f "$html" ] || { echo "no such file: $html (run: make report)" >&2; exit 2; }
abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# No network, no first-run or background work: a file:// page with data: images needs none.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
    --screenshot="$png" --window-size="$size" "file://$abs" >/dev/null 2>&1
[ -s "$png" ] || { echo "chromium wrote no screenshot to $png" >&2; exit 1; }
echo "$png"
