"""Acquiring raw data files: checksum-verified, resumable downloads."""
