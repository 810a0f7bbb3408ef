#!/usr/bin/env bash
# Debian's Fashion-MNIST package, for the tests that read it (they skip without it).
# Best effort: only as root on a Debian-like system; never fails the caller.
set -u
[ -d /usr/share/datasets/fashion-mnist ] && exit 0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || exit 0
apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } ||
  echo "note: dataset-fashion-mnist not installed; its tests will be skipped"
exit 0
