"""Compiled kernels: thin Cython wrappers over csrc/."""
