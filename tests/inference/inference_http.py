"""Small HTTP helpers for the inference tests."""

from __future__ import annotations

import httpx

# Each adapter answers its own string for any line image (see ocrtune_devkit.adapters).
FIXED_TEXTS = {
    "a0": "甲乙丙丁",
    "a1": "一二三四五",
    "a2": "日月年",
    "a3": "上下左右中",
    "a4": "金额合计元",
}
MAX_LORAS = 2
MAX_CPU_LORAS = 3
MAX_LORA_RANK = 16
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
MAX_ADAPTER_BYTES = 1024 * 1024  # a tiny adapter is ~280 KB


def ocr(http: httpx.Client, data: bytes, adapter: str | None = None, **fields) -> httpx.Response:
    headers = {"X-Adapter": adapter} if adapter else {}
    form = {"max_tokens": "16", **{k: str(v) for k, v in fields.items()}}
    return http.post("/ocr", files={"file": ("page.png", data, "image/png")}, data=form, headers=headers)


async def aocr(http: httpx.AsyncClient, data: bytes, adapter: str | None = None, **fields) -> httpx.Response:
    headers = {"X-Adapter": adapter} if adapter else {}
    form = {"max_tokens": "16", **{k: str(v) for k, v in fields.items()}}
    return await http.post("/ocr", files={"file": ("page.png", data, "image/png")}, data=form, headers=headers)
