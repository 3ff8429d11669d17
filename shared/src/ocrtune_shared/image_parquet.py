"""The dataset file every part reads and writes: a parquet of ``image`` and ``text`` in the HF ``Image`` layout.

``image`` is a struct of the encoded bytes and the original path, as the ``datasets`` ``Image``
feature stores it, and the schema metadata names the features, so ``datasets.load_dataset`` gives
PIL images back. Here because the client's dataset builder, the devkit's synthetic data and the
tests all write this file, and the trainer reads it: one writer, no copy of the layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

HF_IMAGE_FEATURES = {
    "info": {"features": {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}}}
}


def write_image_parquet(records: Iterable[tuple[bytes, str | None, str]], output: Path | str) -> Path:
    """Write ``(encoded image, original path, text)`` records in the HF ``Image`` + ``text`` layout."""
    # Imported here: the services import ocrtune_shared without needing pyarrow at start-up.
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = list(records)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": d, "path": p} for d, p, _ in records], type=image_type),
            "text": pa.array([t for _, _, t in records], type=pa.string()),
        }
    ).replace_schema_metadata({"huggingface": json.dumps(HF_IMAGE_FEATURES)})
    pq.write_table(table, output)
    return output
