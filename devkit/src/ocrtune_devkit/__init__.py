"""Builders of local test material, and the demo: no hub, no downloads.

``tiny_models`` writes small random-weight checkpoints that both transformers and
vLLM load from the same files; ``synthetic`` renders Chinese OCR lines and writes
them in the dataset layouts users bring; ``processes`` starts, waits for and stops
the services (each in its own process group); ``demo`` is ``make demo``.
"""
