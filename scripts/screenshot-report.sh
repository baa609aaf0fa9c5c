#!/usr/bin/env bash
# Screenshot of an HTML report with headless Chromium: scripts/screenshot-report.sh HTML PNG
#
# Used by orchestrator/tests/report_html.rs to check that the report renders into a page with
# something on it, and by hand to look at a report without a desktop. The report is
# self-contained, so Chromium needs no network; it runs with a throw-away profile.
# Exit codes: 0 screenshot written; 2 usage error or no Chromium (run `make setup`);
# 3 Chromium ran but wrote no screenshot.
set -euo pipefail

usage() { printf 'usage: %s REPORT.html OUT.png\n' "${0##*/}" >&2; exit 2; }
[ $# -eq 2 ] || usage
html=$1
png=$2
[ -f "$html" ] || { printf 'screenshot-report: no such file: %s\n' "$html" >&2; exit 2; }

browser=""
for candidate in chromium chromium-headless-shell chromium-browser; do
  if command -v "$candidate" >/dev/null 2>&1; then browser=$(command -v "$candidate"); break; fi
done
if [ -z "$browser" ]; then
  printf 'screenshot-report: no chromium or chromium-headless-shell on PATH; run `make setup` (it installs the Debian package chromium)\n' >&2
  exit 2
fi

abs_html=$(realpath -- "$html")
abs_png=$(realpath -m -- "$png")
mkdir -p -- "$(dirname -- "$abs_png")"
rm -f -- "$abs_png"

profile=$(mktemp -d "${TMPDIR:-/tmp}/lab-chromium.XXXXXX")
trap 'rm -rf -- "$profile"' EXIT

# Chromium can hang on a broken sandbox or GPU set-up; give it a deadline, then kill it.
log="$profile/chromium.log"
if ! timeout --kill-after=10 120 "$browser" \
    --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --no-first-run --no-default-browser-check --disable-extensions --disable-sync \
    --user-data-dir="$profile" \
    --window-size=1400,2400 \
    --screenshot="$abs_png" \
    "file://$abs_html" >"$log" 2>&1; then
  printf 'screenshot-report: %s failed on %s; its output:\n' "$browser" "$abs_html" >&2
  cat "$log" >&2
  exit 3
fi

if [ ! -s "$abs_png" ]; then
  printf 'screenshot-report: %s wrote no screenshot to %s; its output:\n' "$browser" "$abs_png" >&2
  cat "$log" >&2
  exit 3
fi
printf '%s\n' "$abs_png"
