#!/usr/bin/env bash
# Debian packages some tests use: dataset-fashion-mnist (its loader tests skip without it),
# chromium (renders report.html and the demo page; required when CI is set) and npm (fetches
# onnxruntime-web for `gankit demo`; required when CI is set). Best effort: only as root with apt-get;
# never fails the caller.
set -u
need=()
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null || need+=(chromium)
command -v npm >/dev/null || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: not installed: ${need[*]} (needs root and apt-get); their tests will be skipped"
  exit 0
fi
echo "installing ${need[*]} (Debian packages used by the tests)"
apt-get install -y -q "${need[@]}" >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } ||
  echo "note: could not install ${need[*]}; their tests will be skipped"
exit 0
