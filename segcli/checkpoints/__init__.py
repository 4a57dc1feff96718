"""Checkpoint records, the manifest, downloads, lookup and loading."""
