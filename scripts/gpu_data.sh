#!/usr/bin/env bash
# Prepares, HERE, the inputs the GPU machine cannot make itself (it has no CJK fonts), into
# .gpudata/ (ignored through .git/info/exclude), carried with the first scripts/gpu_session.sh call:
#   lines.jsonl        the serving bench's lines and A4 pages (bench/inference_bench.py --render-only)
#   train_lines.jsonl  the training bench's SCAN lines (bench/train_adapter_bench.py --render-only)
#   fonts/             Noto Sans CJK cut down to the characters the devkit draws (fonttools' subsetter),
#                      under the file name ocrtune_devkit.synthetic looks for: ~0.3 MB instead of 20 MB,
#                      so that .gpudata fits in a device call beside the last wheel part (64 MiB a call).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
OUT=.gpudata
mkdir -p "$OUT/fonts" .git/info
grep -qxF "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >> .git/info/exclude

"$PY" bench/inference_bench.py --render-only --samples "$OUT/lines.jsonl" --pages 4
"$PY" bench/train_adapter_bench.py --render-only --samples "$OUT/train_lines.jsonl"

# fonttools only for this cut, in a throwaway folder: the project does not depend on it.
TOOLS=/tmp/ocrtune-fonttools
[ -d "$TOOLS/fontTools" ] || "$PY" -m pip install -q --disable-pip-version-check --target "$TOOLS" "fonttools==4.60.1"
chars="$OUT/fonts/chars.txt"
"$PY" - "$chars" <<'PYEOF'
import sys
from ocrtune_devkit import charset
text = "".join(sorted(set(charset.CJK_CHARS + charset.READER_CHARS + charset.DIGITS + charset.PUNCTUATION
                          + "".join(map(chr, range(0x20, 0x7F))))))
open(sys.argv[1], "w").write(text)
PYEOF
src=/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
PYTHONPATH="$TOOLS" "$PY" -m fontTools.subset "$src" --font-number=0 --text-file="$chars" \
  --output-file="$OUT/fonts/NotoSansCJK-Regular.ttc" --layout-features='*'
rm -f "$chars"
du -sh "$OUT" "$OUT"/* "$OUT"/fonts/*
