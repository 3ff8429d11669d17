#!/usr/bin/env bash
# Prepares, HERE (a machine that reaches PyPI), everything the offline GPU machine needs to run the
# inference service on vLLM 0.26.0 (CUDA build) and the trainer path (trl SFTTrainer, datasets):
# downloads the wheels, checks their Requires-Dist against what that machine already has, and cuts
# them into numbered part folders of at most GPU_WHEELS_PART_MIB (58) MiB under .gpuwheels/, one
# part per device call. docs/gpu-machine.md says how to carry them; scripts/gpu_install.sh
# installs them there.
#
# 58 MiB because the device tool carries at most 64 MiB a call (repo + one part) and, during the
# carry calls, the checkout travels without the reader checkpoint's *.safetensors (33 MB, moved
# aside by the developer; docs/gpu-machine.md): what is left of the repo is ~1 MiB (the report
# below measures it and warns when repo + the largest part would pass 64 MiB).
#
#   scripts/gpu_wheels.sh            download (idempotent), check, split, print the carry sequence
#   GPU_WHEELS_SLIM=0 scripts/gpu_wheels.sh   keep the vllm wheel whole (6 parts instead of 3)
#
# The GPU machine (see /work/.library/device/KINDS.md): x86_64, Python 3.12.3, torch 2.11.0+cu130,
# transformers 5.17.0 ... Only what it lacks is shipped (PACKAGES below); IFNEEDED wheels are
# installed there only when the machine's own copy is too old.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

OUT="$ROOT/.gpuwheels"
DL="$OUT/dl"
PART_MIB="${GPU_WHEELS_PART_MIB:-62}"
SLIM="${GPU_WHEELS_SLIM:-1}"
VLLM_VERSION=0.26.0
PY="${PYTHON:-python3}"

# name==version  reason (one line each; the reason goes into the manifest and the docs).
PACKAGES=$(cat <<'EOF'
vllm==0.26.0                 the engine (AsyncLLM); CUDA build, torch==2.11.0 pin matches the machine
pydantic==2.14.4             vllm.config / vllm.engine.arg_utils; ocrtune_shared schema
pydantic-core==2.50.5        exact pin of pydantic 2.14.4
annotated-types==0.8.0       pydantic
typing-inspection==0.4.5     pydantic, fastapi, pydantic-settings
msgspec==0.22.0              vllm.v1.engine (EngineCoreRequest structs), vllm.lora.request
pyzmq==27.3.0                vllm.utils.network_utils: AsyncLLM <-> EngineCore process IPC
pybase64==1.5.1              vllm.multimodal.media (imported by vllm.multimodal)
cachetools==8.0.2            vllm.utils.cache (multimodal processor cache)
cbor2==6.3.0                 vllm.utils.hashing (prefix-cache block hashes)
openai-harmony==0.0.8        vllm.config -> vllm.reasoning -> vllm.entrypoints.mcp.tool_server (module level)
openai==2.54.0               vllm.entrypoints.mcp.tool / chat_utils types (module level); 2.x because 3.x needs httpx2
distro==1.9.0                openai
jiter==0.19.0                openai
sniffio==1.3.1               openai
llguidance==1.7.6            vllm.v1.structured_output (class annotations load it at import); guidance backend
xgrammar==0.2.7              vllm.v1.structured_output default backend (response_format / issue 13); 0.2.8+ needs tvm-ffi>=0.1.11
apache-tvm-ffi==0.1.10       xgrammar's FFI; the version vllm 0.26 pins
blake3==1.0.11               vllm.multimodal.hasher (default VLLM_MM_HASHER_ALGORITHM) for every image request
setproctitle==1.3.8          vllm.utils.system_utils process titles (optional, 33 kB)
fastapi==0.136.3             our service (vllm asks <0.137,>=0.133)
starlette==1.10.0            fastapi, sse-starlette (vllm asks >=1.0.1)
pydantic-settings==2.16.3    ocrtune_inference.settings
python-dotenv==1.2.4         pydantic-settings
python-multipart==0.0.34     multipart/form-data uploads (POST /ocr)
sse-starlette==3.7.0         ocrtune_inference.api.chat streaming
uvicorn==0.54.0              ocrtune_shared.http.serve (plain: uvloop and h11 are on the machine)
pypdfium2==5.15.2            ocrtune_inference.documents (PDF pages)
rapidfuzz==3.14.6            ocrtune_shared.cer
partial-json-parser==0.2.1.1.post7  vllm.LLM (offline engine, the parity tests): vllm.entrypoints.llm -> vllm.tool_parsers imports it at module level
trl==1.16.0                  ocrtune_trainer.training.train_adapter (SFTTrainer, SFTConfig); bench/train_adapter_bench.py
datasets==5.2.0              ocrtune_trainer.training / deepseek_ocr / datasets, ocrtune_devkit.synthetic (HF disk sets); trl at module level
dill==0.4.1                  datasets (fingerprinting, pickling of map functions)
multiprocess==0.70.19        datasets (imported by datasets.arrow_dataset at module level)
sqlalchemy==2.1.9            ocrtune_trainer.jobs (module level), reached through ocrtune_trainer.worker (tests/deepseek/test_trainer_job.py); sqlite, stdlib driver
EOF
)
# Installed there only if the machine's version does not satisfy the spec.
IFNEEDED=$(cat <<'EOF'
typing-extensions==4.16.0    typing-extensions>=4.16.0   pydantic 2.14.4 / pydantic-core 2.50.5 need >=4.16.0
anyio==4.16.0                anyio>=4.7.0                sse-starlette needs >=4.7.0, starlette <5
EOF
)
# vllm 0.26.0 Requires-Dist (non-extra) that are NOT shipped, and why that is fine for our serving
# path (in-process AsyncLLM on one H200, bf16 models, FlashAttention 3); then our own pyprojects'
# (the trainer's optional [gpu] bitsandbytes is an extra, not checked: training.py imports it only
# for adamw_8bit and falls back to adamw_torch without it). Names are normalized.
SKIPPED=$(cat <<'EOF'
fastapi[standard]-extras     fastapi-cli, email-validator, ...: vllm's own CLI/API server only (fastapi itself is shipped)
prometheus-fastapi-instrumentator  vllm's OpenAI API server only
lm-format-enforcer           alternative structured-output backend, imported only when selected
outlines-core                alternative structured-output backend, imported only when selected
lark                         outlines backend only
ijson                        mistral tool parser
jsonschema                   not imported by vllm 0.26 code
mistral-common               Mistral tokenizer / Pixtral models only
compressed-tensors           compressed-tensors quantized checkpoints only
depyf                        torch.compile debug dumps only
watchfiles                   vllm API server TLS reload; uvicorn --reload
python-json-logger           only with a JSON VLLM_LOGGING_CONFIG
anthropic                    vllm API server /v1/messages
mcp                          vllm API server tool server (lazy)
model-hosting-container-standards  vllm API server SageMaker routes
opentelemetry-sdk            tracing, guarded import (vllm.tracing.otel)
opentelemetry-api            tracing, guarded import
opentelemetry-exporter-otlp  tracing, guarded import
opentelemetry-semantic-conventions-ai  tracing, guarded import
torchcodec                   video inputs only
pynvvideocodec               video inputs only
flashinfer-python            FlashInfer attention backend / sampler; has_flashinfer() guards every use, H200 uses FA3
nvidia-cudnn-frontend        FA4 (CuTe) benchmarks only
tilelang                     mHC kernels (lazy import)
nvtx                         profiling ranges only
fastsafetensors              --load-format fastsafetensors only (guarded import)
nvidia-cutlass-dsl           FA4 / CuTe DSL kernels (Blackwell, head_size>256): not on the H200 FA3 path
quack-kernels                CuTe DSL kernels (GDN/DSA models)
tokenspeed-mla               TokenSpeed MLA backend (lazy)
humming-kernels              optional kernels (lazy)
s3fs                         ours (inference, trainer): fsspec loads it only for s3:// adapter stores / data sets; the GPU machine has no network
psycopg                      ours (trainer): only for a postgresql+psycopg:// job store; the default and the tests use sqlite (stdlib driver)
EOF
)
# vllm wheel members dropped by GPU_WHEELS_SLIM=1 (default): 303.7 MB -> 148.4 MB: FA2
# (H200 runs FA3; FA2 is only the fallback for ALiBi, batch invariance and pre-Hopper GPUs), the
# Rust API frontend (vllm serve only), deep_gemm builds for other Pythons and its JIT headers
# (DeepGEMM serves FP8 checkpoints only; vllm catches its failed init, and gpu_install.sh --env
# sets VLLM_USE_DEEP_GEMM=0), and Blackwell-only sparse FMHA.
SLIM_DROP=(
  'vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so'
  'vllm/vllm-rs'
  'vllm/third_party/deep_gemm/_C.cpython-310-x86_64-linux-gnu.so'
  'vllm/third_party/deep_gemm/_C.cpython-311-x86_64-linux-gnu.so'
  'vllm/third_party/deep_gemm/_C.cpython-313-x86_64-linux-gnu.so'
  'vllm/third_party/deep_gemm/_C.cpython-314-x86_64-linux-gnu.so'
  'vllm/third_party/deep_gemm/include/*'
  'vllm/third_party/fmha_sm100/*'
)

mkdir -p "$DL"
exclude="$ROOT/.git/info/exclude"
if [ -d "$ROOT/.git" ] && ! grep -qxF '/.gpuwheels/' "$exclude" 2>/dev/null; then
  echo '/.gpuwheels/' >> "$exclude"
fi

specs() { awk 'NF && $1 !~ /^#/ {print $1}'; }
pkg_specs=$(printf '%s\n' "$PACKAGES" | specs)
ifneeded_specs=$(printf '%s\n' "$IFNEEDED" | specs)

echo "gpu_wheels: downloading $(echo $pkg_specs $ifneeded_specs | wc -w) wheels into $DL"
# This machine's pip config adds a local torch+cpu find-links folder and a torch cap; neither applies.
# shellcheck disable=SC2086
PIP_CONSTRAINT="" PIP_FIND_LINKS="" "$PY" -m pip download --disable-pip-version-check -q \
  --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64 \
  --platform manylinux_2_35_x86_64 -d "$DL" $pkg_specs $ifneeded_specs 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

vllm_whl=$(ls "$DL"/vllm-"$VLLM_VERSION"-*.whl 2>/dev/null | head -1)
[ -n "$vllm_whl" ] || { echo "gpu_wheels: vllm $VLLM_VERSION wheel missing in $DL" >&2; exit 1; }

# --- the vllm wheel as shipped: slimmed copy (default) or the original.
SHIPDIR="$OUT/ship"
rm -rf "$SHIPDIR" && mkdir -p "$SHIPDIR"
vllm_base=$(basename "$vllm_whl")
if [ "$SLIM" = 1 ]; then
  slim="$OUT/slim/$vllm_base"
  if [ ! -f "$slim" ] || [ "$slim" -ot "$vllm_whl" ] || [ "$slim" -ot "$0" ]; then
    echo "gpu_wheels: slimming $vllm_base (dropping ${#SLIM_DROP[@]} members: FA2, vllm-rs, ...)"
    mkdir -p "$OUT/slim" && rm -f "$slim.tmp"
    cp "$vllm_whl" "$slim.tmp"
    zip -q -d "$slim.tmp" "${SLIM_DROP[@]}" >/dev/null
    # Keep RECORD true to the archive.
    tmp=$(mktemp -d)
    record="vllm-$VLLM_VERSION.dist-info/RECORD"
    mkdir -p "$tmp/$(dirname "$record")"
    unzip -p "$slim.tmp" "$record" | "$PY" -c '
import fnmatch, sys
drop = sys.argv[1:]
for line in sys.stdin:
    path = line.split(",", 1)[0]
    if not any(fnmatch.fnmatch(path, pat) for pat in drop):
        sys.stdout.write(line)
' "${SLIM_DROP[@]}" > "$tmp/$record"
    (cd "$tmp" && zip -q "$slim.tmp" "$record")
    rm -rf "$tmp"
    unzip -tq "$slim.tmp" >/dev/null
    mv "$slim.tmp" "$slim"
  fi
  ln -f "$slim" "$SHIPDIR/$vllm_base" 2>/dev/null || cp "$slim" "$SHIPDIR/$vllm_base"
else
  ln -f "$vllm_whl" "$SHIPDIR/$vllm_base" 2>/dev/null || cp "$vllm_whl" "$SHIPDIR/$vllm_base"
fi
for spec in $pkg_specs $ifneeded_specs; do
  name=${spec%%==*}; ver=${spec#*==}
  [ "$name" = vllm ] && continue
  stem=$(echo "$name" | tr '-' '_' | tr 'A-Z' 'a-z')
  f=$(ls "$DL" | awk -v s="$stem-$ver-" 'tolower($0) ~ "^"s && /\.whl$/' | head -1)
  [ -n "$f" ] || { echo "gpu_wheels: no wheel for $spec in $DL" >&2; exit 1; }
  ln -f "$DL/$f" "$SHIPDIR/$f" 2>/dev/null || cp "$DL/$f" "$SHIPDIR/$f"
done

# --- check, recursively, every shipped wheel's non-extra Requires-Dist against shipped + machine.
export GW_PACKAGES="$PACKAGES" GW_IFNEEDED="$IFNEEDED" GW_SKIPPED="$SKIPPED" GW_SHIPDIR="$SHIPDIR" \
  GW_OUT="$OUT" GW_PART_MIB="$PART_MIB" GW_SLIM="$SLIM"
"$PY" - <<'PYEOF'
import hashlib, os, re, sys, zipfile
from email.parser import Parser
try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # this machine's bare python3: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
# The GPU machine's packages (KINDS.md, 2026-11-17) with the versions known from it.
MACHINE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs build
certifi charset-normalizer click cloudpickle cmake colorama cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cython einops filelock flatbuffers fonttools frozenlist fsspec grpcio h11 h5py
hf-xet httpcore httpx huggingface-hub idna imageio jinja2 joblib lxml markdown-it-py markupsafe mdurl
ml-dtypes mpmath msgpack multidict networkx ninja numba numba-cuda llvmlite numpy nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx opencv-python-headless packaging pandas peft
pillow pip prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
python-dateutil pyyaml regex requests rich safetensors scipy sentencepiece setuptools shellingham six
sympy tabulate tiktoken tokenizers torch torchaudio torchvision tqdm transformers triton typer
typing-extensions urllib3 uvloop werkzeug wheel wrapt xxhash yarl zipp""".split()
KNOWN = {"torch": "2.11.0", "torchaudio": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0",
         "tokenizers": "0.23.2", "numpy": "2.5.2", "huggingface-hub": "1.33.0", "triton": "3.6.0",
         "safetensors": "0.8.0", "sentencepiece": "0.2.2", "tiktoken": "0.14.0", "accelerate": "1.15.0"}
machine = {norm(n) for n in MACHINE}
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}

def table(text):
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split(None, 1)
            rows.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return rows

packages = table(os.environ["GW_PACKAGES"])
ifneeded = [(s, rest.split(None, 1)) for s, rest in table(os.environ["GW_IFNEEDED"])]
skipped = {norm(n.split("[")[0]): why for n, why in table(os.environ["GW_SKIPPED"])}
shipdir = os.environ["GW_SHIPDIR"]
wheels = sorted(os.listdir(shipdir))
shipped = {}  # norm name -> (version, wheel file)
for w in wheels:
    with zipfile.ZipFile(os.path.join(shipdir, w)) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        meta = Parser().parsestr(z.read(meta_name).decode())
    shipped[norm(meta["Name"])] = (meta["Version"], w, meta.get_all("Requires-Dist") or [])
ifneeded_names = {norm(s.split("==")[0]) for s, _ in ifneeded}

problems, notes = [], []
print("\n== Requires-Dist check (non-extra, Python 3.12 x86_64 Linux) ==")
for name, (ver, w, reqs) in sorted(shipped.items()):
    for raw in reqs:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate(ENV):
            continue
        rn = norm(req.name)
        spec = str(req.specifier) or "(any)"
        if rn in shipped and rn not in ifneeded_names:
            v = shipped[rn][0]
            if req.specifier and not req.specifier.contains(Version(v), prereleases=True):
                problems.append(f"CONFLICT {name} {ver} needs {req.name}{spec}, shipping {v}")
        elif rn in machine:
            known = KNOWN.get(rn)
            if known is None:
                if req.specifier:
                    alt = " (IFNEEDED wheel shipped)" if rn in ifneeded_names else ""
                    notes.append(f"VERIFY  {name} needs {req.name}{spec}: on the machine, version not recorded here{alt}")
            elif req.specifier and not req.specifier.contains(Version(known), prereleases=True):
                hard = "==" in spec
                problems.append(f"CONFLICT {name} {ver} needs {req.name}{spec}, machine has {known}"
                                + (" (hard pin)" if hard else ""))
        elif rn in skipped:
            notes.append(f"SKIP    {name} needs {req.name}{spec}: not shipped ({skipped[rn]})")
        else:
            problems.append(f"MISSING {name} {ver} needs {req.name}{spec}: neither shipped nor on the machine")
# Our own packages' dependencies (pyproject.toml), read from the checkout.
import tomllib
# The trainer path (ocrtune_trainer.training / evaluation / publish, ocrtune_devkit, the client
# the devkit imports) runs from the checkout there too.
for pyproject in ("shared/pyproject.toml", "services/inference/pyproject.toml", "services/trainer/pyproject.toml",
                  "devkit/pyproject.toml", "client/pyproject.toml"):
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    for raw in project.get("dependencies", []):
        req = Requirement(raw)
        rn = norm(req.name)
        spec = str(req.specifier) or "(any)"
        if rn.startswith("ocrtune-"):
            continue
        if rn in shipped:
            v = shipped[rn][0]
            if req.specifier and not req.specifier.contains(Version(v), prereleases=True):
                problems.append(f"CONFLICT {project['name']} needs {req.name}{spec}, shipping {v}")
        elif rn in machine:
            known = KNOWN.get(rn)
            if known is None:
                if req.specifier:
                    notes.append(f"VERIFY  {project['name']} needs {req.name}{spec}: on the machine, version not recorded here")
            elif req.specifier and not req.specifier.contains(Version(known), prereleases=True):
                problems.append(f"CONFLICT {project['name']} needs {req.name}{spec}, machine has {known}")
        elif rn in skipped:
            notes.append(f"SKIP    {project['name']} needs {req.name}{spec}: not shipped ({skipped[rn]})")
        else:
            problems.append(f"MISSING {project['name']} needs {req.name}{spec}: neither shipped nor on the machine")
for name in sorted(shipped):
    if name in machine and name not in ifneeded_names:
        notes.append(f"NOTE    {name} is shipped although the machine has one (ours shadows it on PYTHONPATH)")
for line in notes + problems:
    print("  " + line)
print(f"  -> {len(problems)} problem(s); {sum(l.startswith('VERIFY') for l in notes)} to verify there "
      "(scripts/gpu_install.sh prints the machine's real versions)")

# --- plan the parts: big wheels cut into pieces, everything packed first-fit decreasing.
part_bytes = int(float(os.environ["GW_PART_MIB"]) * 1024 * 1024) - 128 * 1024  # room for MANIFEST
items = []  # (size, wheel, piece index, offset)
for w in wheels:
    size = os.path.getsize(os.path.join(shipdir, w))
    if size > part_bytes:
        n = -(-size // part_bytes)
        for i in range(n):
            items.append((min(part_bytes, size - i * part_bytes), w, i, n))
    else:
        items.append((size, w, 0, 1))
bins = []  # [free, [items]]
for it in sorted(items, key=lambda t: (-t[0], t[1], t[2])):
    for b in bins:
        if b[0] >= it[0]:
            b[0] -= it[0]; b[1].append(it); break
    else:
        bins.append([part_bytes - it[0], [it]])
with open(os.path.join(os.environ["GW_OUT"], "plan.tsv"), "w") as f:
    for k, (_, its) in enumerate(bins, 1):
        for size, w, i, n in its:
            f.write(f"p{k:02d}\t{w}\t{i}\t{n}\t{size}\n")
with open(os.path.join(os.environ["GW_OUT"], "MANIFEST"), "w") as f:
    f.write(f"# ocrtune GPU wheels: {len(bins)} parts; file sha256 size pieces kind reason\n")
    f.write(f"parts\t{len(bins)}\n")
    reasons = {norm(s.split("==")[0]): r for s, r in packages}
    kinds = {norm(s.split("==")[0]): ("ifneeded", r[0], r[1] if len(r) > 1 else "") for s, r in ifneeded}
    for name, (ver, w, _) in sorted(shipped.items()):
        p = os.path.join(shipdir, w)
        h = hashlib.sha256(open(p, "rb").read()).hexdigest()
        n = next(t[3] for t in items if t[1] == w)
        if name in kinds:
            kind, cond, why = kinds[name]
            f.write(f"file\t{w}\t{h}\t{os.path.getsize(p)}\t{n}\tifneeded:{cond}\t{why}\n")
        else:
            slim = " [slimmed]" if name == "vllm" and os.environ["GW_SLIM"] == "1" else ""
            f.write(f"file\t{w}\t{h}\t{os.path.getsize(p)}\t{n}\tinstall\t{reasons.get(name, '')}{slim}\n")
    for n, why in sorted(skipped.items()):
        f.write(f"skipped\t{n}\t{why}\n")
if problems:
    sys.exit(3)
PYEOF

# --- cut and lay out the parts (pieces: split -b into WHEEL.000, WHEEL.001, ...).
find "$OUT" -maxdepth 1 -type d -name 'p[0-9]*' -exec rm -rf {} +
rm -rf "$OUT/cut" && mkdir -p "$OUT/cut"
awk -F'\t' '$4 > 1 && $3 == 0 {print $2 "\t" $5}' "$OUT/plan.tsv" | while IFS=$'\t' read -r wheel bytes; do
  split -b "$bytes" -d -a 3 "$SHIPDIR/$wheel" "$OUT/cut/$wheel."
done
while IFS=$'\t' read -r part wheel idx pieces size; do
  mkdir -p "$OUT/$part"
  if [ "$pieces" = 1 ]; then
    cp "$SHIPDIR/$wheel" "$OUT/$part/$wheel"  # a plain copy, no hard link, for the transfer
  else
    piece=$(printf '%s.%03d' "$wheel" "$idx")
    mv -f "$OUT/cut/$piece" "$OUT/$part/$piece"
    [ "$(stat -c %s "$OUT/$part/$piece")" = "$size" ] || { echo "gpu_wheels: $piece has the wrong size" >&2; exit 1; }
  fi
done < "$OUT/plan.tsv"
rm -rf "$OUT/cut"
for d in "$OUT"/p[0-9]*; do cp "$OUT/MANIFEST" "$d/MANIFEST"; done

# --- report.
nparts=$(ls -d "$OUT"/p[0-9]* | wc -l)
# What a device call carries besides the part: tracked + untracked non-ignored files, less the
# reader checkpoint's weights, which the developer moves aside for the carry calls.
READER_WEIGHTS='^devkit/src/ocrtune_devkit/checkpoints/reader-zh/.*\.safetensors$'
repo_b=$(git ls-files -z -co --exclude-standard 2>/dev/null | grep -zv "$READER_WEIGHTS" \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
echo
echo "== parts (each <= $PART_MIB MiB; the repo travels too, without reader-zh/*.safetensors: keep it under $(awk -v p="$PART_MIB" 'BEGIN {print 64 - p}') MiB, now $(echo "$repo_b" | awk '{printf "%.1f", $1/1048576}') MiB) =="
for d in "$OUT"/p[0-9]*; do
  printf '  %s  %6.1f MiB  %s\n' "$(basename "$d")" "$(du -b "$d" | awk '{print $1/1048576}')" \
    "$(ls "$d" | grep -v MANIFEST | sed -E 's/^([^-]+)-([^-]+)-.*\.whl(\.[0-9]+)?$/\1-\2\3/' | tr '\n' ' ' | cut -c1-120)"
done
total=$(cat "$OUT"/p[0-9]*/* | wc -c)
printf '  total %.1f MiB (%d bytes) in %d parts\n' "$(echo "$total" | awk '{print $1/1048576}')" "$total" "$nparts"
largest=$(for d in "$OUT"/p[0-9]*; do du -b "$d" | awk '{print $1}'; done | sort -n | tail -1)
if [ $((repo_b + largest)) -gt $((64 * 1024 * 1024)) ]; then
  echo "  WARNING: repo + largest part = $(( (repo_b + largest) / 1048576 )) MiB > 64 MiB: the device tool will refuse the carry" >&2
fi
echo
echo "== carry sequence (consecutive device calls, each within 30 s of the last, on one warm machine) =="
i=0
for d in "$OUT"/p[0-9]*; do
  i=$((i + 1)); p=".gpuwheels/$(basename "$d")"
  if [ "$i" -lt "$nparts" ]; then
    echo "  call $i: carry [\"$p\"]  command: bash scripts/gpu_install.sh --status"
  else
    echo "  call $i: carry [\"$p\"]  command: bash scripts/gpu_install.sh && eval \"\$(bash scripts/gpu_install.sh --env)\" && <your work>"
  fi
done
