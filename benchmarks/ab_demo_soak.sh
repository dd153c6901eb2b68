#!/bin/bash
# Interleaved A/B of `sfauth demo` and a 100,000-request soak between two checkouts, each with
# its own .venv (`make .venv/.installed-dev` in each):
#   benchmarks/ab_demo_soak.sh BEFORE_DIR AFTER_DIR [ROUNDS]
# Prints one line per run; compare medians, side by side, from one run of this script.
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds=${3:-6}
for _ in $(seq "$rounds"); do
  for dir in "$before" "$after"; do
    start=$(date +%s.%N)
    line=$(cd "$dir" && .venv/bin/sfauth demo 2>&1 | grep "wall time")
    end=$(date +%s.%N)
    echo "demo $(git -C "$dir" rev-parse --short HEAD) $line; process $(echo "$end - $start" | bc) s"
  done
done
for _ in 1 2; do
  for dir in "$before" "$after"; do
    line=$(cd "$dir" && .venv/bin/python -m benchmarks.soak --requests 100000 2>&1 | grep "^requests:")
    echo "soak $(git -C "$dir" rev-parse --short HEAD) $line"
  done
done
