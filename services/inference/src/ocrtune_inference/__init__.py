"""ocrtune inference service."""
