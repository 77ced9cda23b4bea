"""Pointing: the TPOINT model, solve runs and their I/O, plots."""
