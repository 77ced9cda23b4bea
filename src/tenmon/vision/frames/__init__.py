"""The frame pipeline: calibration, LA Cosmic, sources, products, cluster candidates."""
