"""Schema shared by the ocrtune services and client.

Everything that crosses a wire (HTTP) or a disk boundary (the adapter store) is
declared here once; the services and the client import it, never re-declare it.
"""

from ocrtune_shared.headers import ADAPTER_HEADER, API_KEY_HEADER

__all__ = ["ADAPTER_HEADER", "API_KEY_HEADER"]
