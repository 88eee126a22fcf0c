"""Speed measurement of SAM2 fine-tuning: per-strategy step benchmarks, data-pipeline benchmark, Markdown report."""

from sam2tune.speed.measure import count_flops, reset_memory, synchronize, time_steps
from sam2tune.speed.report import load_results, rows_table, write_markdown
from sam2tune.speed.runner import BenchmarkSettings, run_benchmark
from sam2tune.speed.training import ROWS, Row, build_network, make_step, run_row, select_rows, synthetic_batch

__all__ = [
    "ROWS",
    "BenchmarkSettings",
    "Row",
    "build_network",
    "count_flops",
    "load_results",
    "make_step",
    "reset_memory",
    "rows_table",
    "run_benchmark",
    "run_row",
    "select_rows",
    "synchronize",
    "synthetic_batch",
    "time_steps",
    "write_markdown",
]
