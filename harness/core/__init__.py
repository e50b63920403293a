"""The bottom layer: the registry, the model contracts, errors by kind, timing, progress, and
process plumbing. Imports nothing else of harness (see docs/architecture.md for the layers)."""
