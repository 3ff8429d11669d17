#!/usr/bin/env bash
# Runs THERE, on the offline GPU machine, from the repository root: puts back together the wheels
# that scripts/gpu_wheels.sh cut into .gpuwheels/pNN part folders (carried one per device call, see
# docs/gpu-machine.md), installs them into /tmp/site with pip (no index, no deps) and checks that
# vLLM, the inference service and the trainer path (trl, datasets, ocrtune_trainer.training,
# ocrtune_devkit) import.
#
#   bash scripts/gpu_install.sh            reassemble, install (skipped when already done), check
#   bash scripts/gpu_install.sh --status   which parts this machine holds so far (calls 1..N-1)
#   bash scripts/gpu_install.sh --env      the exports a later command needs:
#                                          eval "$(bash scripts/gpu_install.sh --env)"
#   bash scripts/gpu_install.sh --trainer  the trainer path only, from the last part alone (trl, datasets and
#                                          the small wheels; vllm, split over every part, is left out):
#                                          one device call when the serving path is not needed
#
# Environment: GPU_WHEELS_DIR (.gpuwheels), GPU_WHEELS_OUT (/tmp/gpuwheels), GPU_SITE (/tmp/site),
# PYTHON (python3: the machine's /opt/torch/.venv/bin/python3 with torch 2.11.0+cu130).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# A carried folder lasts ONE call: the next call's copy of the checkout drops every ignored
# path it does not name (seen 2026-12-02). Each call therefore moves its part out of the
# checkout into PARTS, which lasts while the machine stays warm.
MODE="${1:-install}"
PARTS="${GPU_WHEELS_DIR:-/tmp/gpuparts}"
mkdir -p "$PARTS"
if [ "$MODE" != "--env" ]; then  # --env only prints; the call's --status or install has copied
  for carried in "$ROOT"/.gpuwheels/p[0-9]*; do
    [ -d "$carried" ] && cp -r "$carried" "$PARTS/"
  done
fi
WHEELS="${GPU_WHEELS_OUT:-/tmp/gpuwheels}"
SITE="${GPU_SITE:-/tmp/site}"
PY="${PYTHON:-python3}"

manifest=""
for m in "$PARTS"/p[0-9]*/MANIFEST; do [ -f "$m" ] && { manifest="$m"; break; }; done

env_lines() {
  # Our code runs from the checkout (edits travel with each call): the services, the shared schema,
  # the devkit (tiny/random checkpoints, synthetic lines) and the client it imports.
  echo "export PYTHONPATH=$SITE:$ROOT/services/inference/src:$ROOT/services/trainer/src:$ROOT/shared/src:$ROOT/devkit/src:$ROOT/client/src\${PYTHONPATH:+:\$PYTHONPATH}"
  echo "export PATH=$SITE/bin:\$PATH"
  # No network there: no Hub or datasets look-ups; no tokenizers thread pool forked by datasets / DataLoader workers.
  echo "export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false"
  # The slimmed vllm wheel has no DeepGEMM JIT headers (FP8 checkpoints only).
  if [ -n "$manifest" ] && grep -q '\[slimmed\]' "$manifest"; then echo "export VLLM_USE_DEEP_GEMM=0"; fi
  # flashinfer is not shipped, and vLLM 0.26's sampler imports it unguarded unless told not to.
  echo "export VLLM_USE_FLASHINFER_SAMPLER=0"
  # Our benches and tests touch CUDA before vLLM starts its engine process: fork would fail.
  echo "export VLLM_WORKER_MULTIPROC_METHOD=spawn"
}
if [ "$MODE" = "--env" ]; then env_lines; exit 0; fi

[ -n "$manifest" ] || { echo "gpu_install: no part folder with a MANIFEST under $PARTS: carry .gpuwheels/p01 first" >&2; exit 2; }
nparts=$(awk -F'\t' '$1 == "parts" {print $2}' "$manifest")
present=() missing=()
for i in $(seq 1 "$nparts"); do
  p=$(printf 'p%02d' "$i")
  # A folder left by another run of gpu_wheels.sh (other MANIFEST) does not count.
  if [ -f "$PARTS/$p/MANIFEST" ] && cmp -s "$PARTS/$p/MANIFEST" "$manifest"; then present+=("$p"); else missing+=("$p"); fi
done

if [ "$MODE" = "--status" ]; then
  echo "gpu_install: parts here ${#present[@]}/$nparts: ${present[*]:-none}"
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "gpu_install: READY: run 'bash scripts/gpu_install.sh' (in this call or the next)"
  else
    echo "gpu_install: still to carry: ${missing[*]}"
  fi
  df -h /tmp | tail -1 | awk '{print "gpu_install: /tmp has " $4 " free"}'
  exit 0
fi
TRAINER_ONLY=0
[ "$MODE" = --trainer ] && { TRAINER_ONLY=1; MODE=install; }
[ "$MODE" = install ] || { echo "usage: $0 [--status|--env|--trainer]" >&2; exit 64; }
if [ "${#missing[@]}" -gt 0 ] && [ "$TRAINER_ONLY" = 0 ]; then
  echo "gpu_install: parts missing on this machine: ${missing[*]} (present: ${present[*]:-none})." >&2
  echo "gpu_install: a machine that went cold loses earlier parts: carry them again, p01 first." >&2
  exit 2
fi

# --- reassemble into $WHEELS and verify every file against the manifest.
mkdir -p "$WHEELS"
install_files=() ifneeded=()
while IFS=$'\t' read -r tag file sha size pieces kind _reason; do
  [ "$tag" = file ] || continue
  dest="$WHEELS/$file"
  if ! { [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$size" ] && echo "$sha  $dest" | sha256sum -c --status; }; then
    if [ "$pieces" = 1 ]; then
      src=$(ls "$PARTS"/p[0-9]*/"$file" 2>/dev/null | head -1)
      [ -n "$src" ] || { echo "gpu_install: $file not found in any part" >&2; exit 2; }
      cp "$src" "$dest.tmp"
    else
      if [ "$TRAINER_ONLY" = 1 ] && [ "$(ls "$PARTS"/p[0-9]*/"$file".[0-9][0-9][0-9] 2>/dev/null | wc -l)" != "$pieces" ]; then
        echo "gpu_install: --trainer: $file is not all here, left out"
        continue
      fi
      : > "$dest.tmp"
      for k in $(seq 0 $((pieces - 1))); do
        piece=$(printf '%s.%03d' "$file" "$k")
        src=$(ls "$PARTS"/p[0-9]*/"$piece" 2>/dev/null | head -1)
        [ -n "$src" ] || { echo "gpu_install: piece $piece not found in any part" >&2; exit 2; }
        cat "$src" >> "$dest.tmp"
      done
    fi
    echo "$sha  $dest.tmp" | sha256sum -c --status || { echo "gpu_install: $file: sha256 mismatch after reassembly" >&2; exit 3; }
    mv "$dest.tmp" "$dest"
  fi
  case "$kind" in
    install) install_files+=("$dest") ;;
    ifneeded:*) ifneeded+=("${kind#ifneeded:}"$'\t'"$dest") ;;
  esac
done < "$manifest"
echo "gpu_install: $(grep -c "^file" "$manifest") wheels reassembled and verified in $WHEELS"

# --- wheels for packages the machine has, installed only where its own version is too old.
for entry in "${ifneeded[@]}"; do
  spec=${entry%%$'\t'*}; whl=${entry#*$'\t'}
  if env -u PYTHONPATH "$PY" - "$spec" <<'PYEOF'
import importlib.metadata as md, sys
from packaging.requirements import Requirement
r = Requirement(sys.argv[1])
try:
    v = md.version(r.name)
except md.PackageNotFoundError:
    print(f"gpu_install: {r.name} not on this machine: installing ours"); sys.exit(1)
ok = r.specifier.contains(v, prereleases=True)
print(f"gpu_install: machine's {r.name} {v} {'satisfies' if ok else 'does NOT satisfy'} {r.specifier}" + ("" if ok else ": installing ours"))
sys.exit(0 if ok else 1)
PYEOF
  then :; else install_files+=("$whl"); fi
done

# --- install (once per manifest and choice of wheels).
stamp=$( (cat "$manifest"; printf '%s\n' "${install_files[@]}") | sha256sum | cut -c1-16)
if [ -f "$SITE/.ocrtune-gpuwheels" ] && [ "$(cat "$SITE/.ocrtune-gpuwheels")" = "$stamp" ]; then
  echo "gpu_install: $SITE already holds these wheels"
else
  rm -rf "$SITE"
  echo "gpu_install: installing ${#install_files[@]} wheels into $SITE"
  t0=$(date +%s)
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$SITE" "${install_files[@]}"
  echo "gpu_install: pip took $(( $(date +%s) - t0 )) s"
  # Our packages run from the checkout (PYTHONPATH); a dist-info registers their entry points, so
  # vLLM loads the ocrtune general plugin (DeepSeek-OCR modes, ...) in every one of its processes.
  # The trainer, devkit and client declare no plugin entry points (only console scripts, which a
  # dist-info does not create): they need none, `python3 -m ...` / imports find them on PYTHONPATH.
  "$PY" - "$SITE" <<'PYEOF'
import os, sys, tomllib
site = sys.argv[1]
for pyproject in ("shared/pyproject.toml", "services/inference/pyproject.toml"):
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    name, version = project["name"], project["version"]
    d = os.path.join(site, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as fh:
        fh.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = dict(project.get("entry-points", {}))
    if project.get("scripts"):
        groups["console_scripts"] = project["scripts"]
    with open(os.path.join(d, "entry_points.txt"), "w") as fh:
        for group, eps in groups.items():
            fh.write(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n")
    open(os.path.join(d, "INSTALLER"), "w").write("ocrtune-gpu_install\n")
PYEOF
  echo "$stamp" > "$SITE/.ocrtune-gpuwheels"
fi

eval "$(env_lines)"

# --- requirements of what we installed, against what this machine really has.
"$PY" - "$SITE" "$manifest" <<'PYEOF'
import importlib.metadata as md, os, re, sys
from packaging.requirements import Requirement
site, manifest = sys.argv[1], sys.argv[2]
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
skipped = {norm(l.split("\t")[1]) for l in open(manifest) if l.startswith("skipped\t")}
# vllm pins that do not touch the in-process AsyncLLM path on one GPU (checked in vllm 0.26.0's code).
TOLERATED = {
    "numba": "only n-gram speculative decoding and a few model processors import it",
    "setuptools": "not imported by vllm",
    "protobuf": "only vllm's gRPC entrypoint",
    "opencv-python-headless": "video inputs only (guarded import)",
    "aiohttp": "only fetching media from URLs (vllm.connections)",
}
ours = [d for d in md.distributions(path=[site])]
bad, skip = [], 0
for dist in ours:
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            v = md.version(req.name)
        except md.PackageNotFoundError:
            if norm(req.name) in skipped:
                skip += 1
            else:
                bad.append(f"MISSING  {dist.metadata['Name']} needs {req}")
            continue
        if req.specifier and not req.specifier.contains(v, prereleases=True):
            why = TOLERATED.get(norm(req.name))
            if why and dist.metadata["Name"] == "vllm":
                print(f"  TOLERATED vllm needs {req}, found {v}: {why}")
            else:
                bad.append(f"CONFLICT {dist.metadata['Name']} needs {req}, found {v}")
print(f"gpu_install: requirement check: {len(ours)} dists, {skip} requirements skipped on purpose, {len(bad)} problems")
for line in bad:
    print("  " + line)
keys = ["torch", "torchvision", "torchaudio", "triton", "transformers", "tokenizers", "huggingface-hub",
        "numpy", "safetensors", "numba", "setuptools", "protobuf", "aiohttp", "opencv-python-headless",
        "typing-extensions", "anyio", "httpx", "filelock", "prometheus-client", "pillow",
        # the trainer path's (trl 1.16 / datasets 5.2 lower bounds: pyarrow >=24, pandas >=2.1.1, ...)
        "peft", "accelerate", "pyarrow", "pandas", "fsspec", "xxhash", "psutil", "pyyaml", "tqdm", "jinja2"]
vs = []
for k in keys:
    try:
        vs.append(f"{k} {md.version(k)}")
    except md.PackageNotFoundError:
        vs.append(f"{k} -")
print("gpu_install: machine: " + ", ".join(vs))
PYEOF

# --- import check (a traceback, then this script's exit status 4, names what did not import).
import_failed() { echo "gpu_install: IMPORT CHECK FAILED (traceback above): not ready" >&2; exit 4; }
if [ "$TRAINER_ONLY" = 1 ]; then
  "$PY" - <<'PYEOF' || import_failed
import datasets, peft, torch, trl  # noqa: E401
from trl import SFTConfig, SFTTrainer  # noqa: F401
import ocrtune_trainer.training, ocrtune_trainer.evaluation, ocrtune_trainer.recipe  # noqa: E401,F401
import ocrtune_devkit.deepseek  # noqa: F401
print(f"gpu_install: trainer path only: torch {torch.__version__}, GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
      f"trl {trl.__version__}, datasets {datasets.__version__}, peft {peft.__version__}")
print("gpu_install: OK (trainer path)")
PYEOF
  env_lines | sed 's/^/  /'
  exit 0
fi
"$PY" -c "import vllm, fastapi, uvicorn; print(vllm.__version__)" || import_failed
"$PY" - <<'PYEOF' || import_failed
import importlib.metadata as md
import torch
from vllm.v1.engine.async_llm import AsyncLLM  # noqa: F401
import xgrammar, llguidance  # noqa: F401
import ocrtune_inference.main  # noqa: F401
# The trainer path (bench/train_adapter_bench.py, tests/deepseek): any failure here ends the script.
import datasets, peft, trl  # noqa: E401
from trl import SFTConfig, SFTTrainer  # noqa: F401  (train_adapter's lazy import, checked now)
import ocrtune_trainer.training, ocrtune_trainer.evaluation, ocrtune_trainer.publish  # noqa: E401,F401
import ocrtune_trainer.worker  # noqa: F401  (the job store: sqlalchemy, tests/deepseek/test_trainer_job.py)
import ocrtune_devkit.deepseek  # noqa: F401
from vllm.vllm_flash_attn.flash_attn_interface import fa_version_unsupported_reason, is_fa_version_supported
cuda = torch.cuda.is_available()
print(f"gpu_install: torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {torch.cuda.get_device_name(0) if cuda else 'none'}")
if cuda:
    print(f"gpu_install: FlashAttention 3 supported: {is_fa_version_supported(3)} {fa_version_unsupported_reason(3) or ''}")
plugins = sorted(e.name for e in md.entry_points(group="vllm.general_plugins"))
print(f"gpu_install: vllm.general_plugins: {plugins}")
print(f"gpu_install: trl {trl.__version__}, datasets {datasets.__version__}, peft {peft.__version__}")
print("gpu_install: OK")
PYEOF
echo "gpu_install: for later commands in this call, and in later calls while the machine stays warm:"
echo "  eval \"\$(bash scripts/gpu_install.sh --env)\""
env_lines | sed 's/^/  /'
