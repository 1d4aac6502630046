"""A run exported as plain files (`atlas export`): per-unit PNGs, labelled contact sheets, a static page."""

from viewer.export.build import MARKER, SORTS, ExportReport, ExportRequest, export_run

__all__ = ["MARKER", "SORTS", "ExportReport", "ExportRequest", "export_run"]
