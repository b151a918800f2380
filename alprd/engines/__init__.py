"""Inference engines: fingerprinted builds from a model source, validated against it,
installed atomically beside the model, loaded through one small interface.

fingerprint (pure) -> cache (sidecar, lock, atomic install) -> build (child process:
export, backend build, validation) -> manager (ensure every role is current).
One file per runtime under backends/, imported by name only when chosen.
"""
