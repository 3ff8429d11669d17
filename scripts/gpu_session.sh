#!/usr/bin/env bash
# Runs THERE, on the GPU machine, after scripts/gpu_install.sh: the GPU proofs of issue 11, one
# step per device call (each fits the tool's 10-minute limit). Logs and JSON go to $OUT (what
# the device tool brings back) and are copied into bench/results/ here by hand.
#
#   bash scripts/gpu_session.sh notebook   routed-expert LoRA parity test (vLLM vs transformers + peft)
#   bash scripts/gpu_session.sh serve      bench/inference_bench.py on full-size DeepSeek-OCR-2
#   bash scripts/gpu_session.sh train      bench/train_adapter_bench.py, full size, both target sets
#
# Inputs rendered here beforehand (the machine has no CJK fonts), carried as .gpudata/ (13 MB) in
# the first call that runs this script: bash scripts/gpu_data.sh (lines, pages, a cut of Noto Sans CJK).
# Environment: EXPERT_LORA=0 serves adapters without routed experts (if the notebook step failed);
# MAX_NUM_BATCHED_TOKENS (8192) for both engines of the serving bench; REPEATS (2) of its ratio runs;
# VARIANTS of the training bench (its --variants).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
eval "$(bash scripts/gpu_install.sh --env)"
export PYTHONUNBUFFERED=1 OCRTUNE_MODEL_CACHE="${OCRTUNE_MODEL_CACHE:-/tmp/ocrtune-models}"
step="${1:?usage: gpu_session.sh notebook|serve|train}"
# A carried folder lasts one call only (the next call's copy of the checkout drops it): the
# inputs are kept in /tmp, which lasts while the machine stays warm. The fonts go where
# ocrtune_devkit.synthetic looks for Debian's fonts-noto-cjk.
DATA=/tmp/gpudata
if [ -d .gpudata ]; then
  mkdir -p "$DATA" && cp -r .gpudata/. "$DATA/"
  if [ -d "$DATA/fonts" ]; then
    mkdir -p /usr/share/fonts/opentype/noto && cp "$DATA"/fonts/*.tt[cf] /usr/share/fonts/opentype/noto/
  fi
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
case "$step" in
  notebook)
    timeout 420 python3 -m pytest -m slow tests/deepseek/test_vllm_parity.py -k notebook -p no:cacheprovider \
      -x -q -s 2>&1 | tee "$OUT/pytest_notebook.log" | grep -v -i "warn" | tail -40
    ;;
  serve)
    experts=(--expert-lora)
    [ "${EXPERT_LORA:-1}" = 0 ] && experts=()
    timeout 570 python3 bench/inference_bench.py --model deepseek-ocr2 --samples "$DATA/lines.jsonl" \
      --pages 64 --concurrency 16,64 --max-tokens 32 --requests 128 --repeats "${REPEATS:-2}" "${experts[@]}" \
      --max-num-batched-tokens "${MAX_NUM_BATCHED_TOKENS:-8192}" \
      --out "$OUT/inference_bench_gpu.json" 2>&1 | tee "$OUT/inference_bench_gpu.log" \
      | grep -v -i "warn\|it/s\]" | tail -60
    ;;
  train)
    timeout 570 python3 bench/train_adapter_bench.py --samples "$DATA/train_lines.jsonl" \
      ${VARIANTS:+--variants "$VARIANTS"} \
      --out "$OUT/train_adapter_bench.json" 2>&1 | tee "$OUT/train_adapter_bench.log" \
      | grep -v -i "warn\|it/s\]" | tail -60
    ;;
  *) echo "unknown step $step" >&2; exit 64 ;;
esac
