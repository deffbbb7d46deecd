#!/bin/sh
# ctest's fuzz.<target>: run_fuzz.sh FUZZER RUNS FLOOR WORK SEEDS [libFuzzer flags...]
# Runs FUZZER for RUNS inputs from a fresh, empty WORK/corpus (new inputs go there) and the
# committed seeds in SEEDS (read, never written), so every run does the same work from the same
# start: the build tree's corpus does not grow from run to run. A run that -max_total_time cut
# short says how many inputs it ran, and fails below FLOOR: a slow machine must not turn the
# fuzz step into a few inputs that pass. Crashes are saved under WORK/artifacts/.
set -u
fuzzer=$1 runs=$2 floor=$3 work=$4 seeds=$5
shift 5
rm -rf "$work/corpus"
mkdir -p "$work/corpus" "$work/artifacts"
log="$work/last-run.log"
"$fuzzer" -runs="$runs" -artifact_prefix="$work/artifacts/" -print_final_stats=1 "$@" \
  "$work/corpus" "$seeds" >"$log" 2>&1
rc=$?
cat "$log"
if [ $rc -ne 0 ]; then
  echo "run_fuzz: $fuzzer exited $rc" >&2
  exit $rc
fi
ran=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
if [ -z "$ran" ]; then
  echo "run_fuzz: no stat::number_of_executed_units in the output" >&2
  exit 1
fi
echo "run_fuzz: $ran of $runs inputs run (floor $floor)"
if [ "$ran" -lt "$floor" ]; then
  echo "run_fuzz: cut short by -max_total_time after $ran inputs, below the floor of $floor" >&2
  exit 1
fi
