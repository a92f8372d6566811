#!/usr/bin/env bash
# Run every active line of a parameter file one after the other on this machine, through
# jobs/run_train.sh (same folders and resuming as the OAR/SLURM array jobs).
#
#   jobs/run_local.sh                         # jobs/params.txt
#   TRAIN_ARGS="dset=toy src_mod=bsrnn-tiny optim.max_epochs=4" jobs/run_local.sh jobs/params_toy.txt
#
# A line that fails is reported and the next one runs; the exit code counts the failures.
set -uo pipefail
cd "$(dirname "$0")/.."
params=${1:-jobs/params.txt}
if [ ! -f "$params" ]; then
    echo "run_local: parameter file $params not found" >&2
    exit 1
fi
failed=0
while IFS= read -r line || [ -n "$line" ]; do
    trimmed="${line#"${line%%[![:space:]]*}"}"
    [ -z "$trimmed" ] && continue
    [ "${trimmed:0:1}" = "#" ] && continue
    # shellcheck disable=SC2086
    if ! bash jobs/run_train.sh $trimmed < /dev/null; then
        echo "run_local: FAILED: $trimmed" >&2
        failed=$((failed + 1))
    fi
done < "$params"
exit "$failed"
