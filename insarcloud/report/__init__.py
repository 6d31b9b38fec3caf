"""Per-area HTML report with PNG maps, network plots, and time series / forecasts at chosen points."""

from insarcloud.report.html import write_report

__all__ = ["write_report"]
