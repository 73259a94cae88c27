"""absl mains of the tools; `tools/*.py` and the console scripts call them."""
