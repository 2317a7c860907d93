#!/usr/bin/env bash
# README.md shows the complete diff that turns mnist.cc into mnist_kolo.cc:
# this test fails when the README's copy (the ```diff block that starts with
# "--- mnist.cc") is not the files' diff, or when the diff changes more than
# 10 lines.
# Usage: readme_diff_test.sh README.md
set -euo pipefail
readme=$1
here=$(cd "$(dirname "$0")" && pwd)
actual=$(cd "$here" && diff -u --label mnist.cc --label mnist_kolo.cc \
  mnist.cc mnist_kolo.cc || true)
shown=$(awk '/^--- mnist\.cc$/ { on = 1 } on && /^```/ { exit } on' "$readme")
if [[ "$shown" != "$actual" ]]; then
  echo "README.md's diff of mnist.cc and mnist_kolo.cc is out of date:"
  diff <(printf '%s\n' "$shown") <(printf '%s\n' "$actual") || true
  exit 1
fi
changed=$(printf '%s\n' "$actual" | grep -c '^[-+][^-+]' || true)
echo "README diff matches; $changed changed lines (added + removed)"
((changed <= 10))
