#!/bin/bash
# The runtime's layers (README, Architecture): a directory includes only from
# the layers below it and from itself.
#   include/kolo <- common <- wire <- op <- transport <- backend <- core <- api
# Prints every include that breaks the order and fails; passes otherwise.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
order=(include common wire op transport backend core api)
status=0
checked=0
for i in "${!order[@]}"; do
  layer=${order[$i]}
  forbidden=("${order[@]:$((i + 1))}")
  [ "${#forbidden[@]}" -eq 0 ] && continue
  pattern="#include \"runtime/($(IFS='|'; echo "${forbidden[*]}"))/"
  while IFS= read -r file; do
    checked=$((checked + 1))
    if hits=$(grep -nE "$pattern" "$file"); then
      while IFS= read -r hit; do
        echo "FAIL: ${file#$root/}:${hit%%:*}: runtime/$layer includes from a layer above it: ${hit#*:}"
      done <<<"$hits"
      status=1
    fi
  done < <(find "$root/runtime/$layer" -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.inc' \))
done
[ "$checked" -gt 50 ] || { echo "FAIL: only $checked files checked"; exit 1; }
[ "$status" -eq 0 ] && echo "PASS: $checked files keep the layer order"
exit "$status"
