"""The simulated sky: star fields rendered as the CCD sees them."""
