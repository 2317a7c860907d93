# Sourced by kolorun's shell tests (elastic_test.sh, slurm/slurm_test.sh).
# wait_for SECONDS FILE PATTERN: until grep -E finds PATTERN in FILE; returns
# 1 when SECONDS pass first.
wait_for() {
  local until=$((SECONDS + $1))
  while ! grep -qE "$3" "$2" 2>/dev/null; do
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 0.1
  done
}
