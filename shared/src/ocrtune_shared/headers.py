"""HTTP header names that both services and the client agree on."""

ADAPTER_HEADER = "X-Adapter"
"""Selects a LoRA adapter for one request: ``<name>`` or ``<name>@<version>``; absent = base model."""

API_KEY_HEADER = "Authorization"
"""``Bearer <key>`` when the service is started with API keys."""
