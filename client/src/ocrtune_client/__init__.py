"""ocrtune client, CLI and dataset builder."""
