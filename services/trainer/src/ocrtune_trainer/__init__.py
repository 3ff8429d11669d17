"""ocrtune trainer service."""
