#!/usr/bin/env bash
# Checks that a wavesync-bench output (file $1) has every figure, on disk and on tmpfs,
# each as `name: number unit`. It judges no timing: that is the benchmark reader's job.
set -euo pipefail
output="$1"
figures=(
  write.insert.raw write.insert.synced write.insert.no_network write.insert.ratio
  write.update.raw write.update.synced write.update.no_network write.update.ratio
  write.insert_many.raw write.insert_many.synced write.insert_many.no_network write.insert_many.ratio
  latency.p50 latency.p99 latency.max
  throughput throughput.commit_rate_a
  catch_up.time catch_up.rate catch_up.bytes catch_up.operations
  storage.table storage.after_insert storage.after_1_update storage.after_10_updates storage.first_update_growth storage.growth
  memory.idle_rss memory.peak_rss
  fan_out.p50 fan_out.max
)
missing=0
for place in disk tmpfs; do
  for figure in "${figures[@]}"; do
    name="${place}.${figure}"
    if ! grep -Eq "^${name//./\\.}: [0-9]+(\.[0-9]+)? [^ ]+$" "$output"; then
      echo "missing figure: $name" >&2
      missing=$((missing + 1))
    fi
  done
done
grep -q "^summary" "$output" || { echo "missing summary" >&2; missing=$((missing + 1)); }
if [ "$missing" -gt 0 ]; then
  echo "$missing figure(s) missing from $output" >&2
  exit 1
fi
echo "all ${#figures[@]} figures present on disk and on tmpfs"
