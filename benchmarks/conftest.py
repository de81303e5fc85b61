"""Benchmarks import their shared case list from gemm_report.py beside them."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
