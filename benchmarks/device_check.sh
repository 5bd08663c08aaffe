#!/usr/bin/env bash
# One command for a lent GPU: the CUDA tests, then every benchmark that runs on a device, each
# with its own time limit, the whole in <= 10 minutes on one GPU. Writes a Markdown table of
# each command, its last line (the benchmark's headline) and its wall time to
# ${OUT:-.}/device_check.md (and prints it). Usage: bash benchmarks/device_check.sh [python]
set -u
PY=${1:-.venv/bin/python}
OUT=${OUT:-.}
REPORT="$OUT/device_check.md"
DEV=cuda
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || DEV=cpu
{
  echo "# device check ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  $PY -c "import torch; print('- torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu (no CUDA)')"
  echo
  echo "| command | last line | seconds |"
  echo "| --- | --- | --- |"
} > "$REPORT"
run() {  # run LIMIT CMD...: one row of the table
  local limit=$1; shift
  local t0=$(date +%s)
  local last
  last=$(timeout "$limit" "$@" 2>&1 | tail -n 1 | tr '|' '/')
  local rc=${PIPESTATUS[0]}
  local t1=$(date +%s)
  [ "$rc" = 124 ] && last="(timed out after ${limit} s) $last"
  echo "| \`$*\` | $last | $((t1 - t0)) |" >> "$REPORT"
}
run 120 $PY -m pytest -q -x tests/test_train.py -k cuda
run 120 $PY benchmarks/hypernet_step.py --device $DEV --threads 1 --repeats 20 --loop-repeats 1
run 90 $PY benchmarks/batched_seeds.py --device $DEV
run 60 $PY benchmarks/continual_regularizer.py --device $DEV
run 60 $PY benchmarks/partial_generation.py --device $DEV
run 60 $PY benchmarks/lora_step.py --device $DEV
cat "$REPORT"
