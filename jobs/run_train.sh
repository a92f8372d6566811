#!/usr/bin/env bash
# Run one training job: `jobs/run_train.sh <one line of jobs/params.txt>`.
# Called by jobs/book_train (OAR array jobs) and jobs/slurm_train.sbatch (SLURM arrays).
#
# Each parameter set gets its own checkpoint folder and TensorBoard run, named after its
# overrides, so that variants never overwrite each other (nor outputs/bsrnn/*.ckpt):
#   $OUT_ROOT/<slug>/<model>/<target>.ckpt  (OUT_ROOT defaults to outputs/variants)
#   tb_logs/<model>-<target>/<slug>
# A killed or requeued job resumes from its last checkpoint (ckpt_path=auto). Set
# OUT_ROOT=outputs SLUG_DIRS=0 to write the usual outputs/<model>/<target>.ckpt instead.
# Extra arguments in $TRAIN_ARGS are appended (e.g. TRAIN_ARGS="trainer.devices=2");
# $PYTHON picks the interpreter (default: python, after activating .venv when there is one).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi

# "$*" joins the line's arguments; a quoted line such as "a=1 b=2" arrives as one argument
# and is split into overrides below (word splitting on purpose).
line="$*"
line=${line//\"/}   # quotes left in by a scheduler that passes the line verbatim
slug=$(printf '%s' "${line:-default}" | tr ',' '+' | tr ' /=' '_-' | tr -cd '[:alnum:]_.+-')
slug=${slug:-default}
out_root=${OUT_ROOT:-outputs/variants}
if [ "${SLUG_DIRS:-1}" = "1" ]; then
    location=("out_dir=${out_root}/${slug}" "tb_version=${slug}")
else
    location=("out_dir=${out_root}")
fi

python=${PYTHON:-python}
echo "[$(date '+%F %T')] $(hostname): $python train.py ${location[*]} ckpt_path=auto ${line} ${TRAIN_ARGS:-}"
# shellcheck disable=SC2086
exec "$python" train.py "${location[@]}" ckpt_path=auto ${line} ${TRAIN_ARGS:-}
