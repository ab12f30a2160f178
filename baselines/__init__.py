"""Baselines: one module per baseline, native or a thin wrapper of a library's."""
