"""ScaleNet: base models x scaling strategies (depth, width, resolution per scaling stage)."""
