"""The application on top of the layers: the `lakehouse` CLI, pipeline orchestration and reports.

It may import every layer; no layer and not the core imports it.
"""
