"""tenmon.drivers.sim: see DESIGN.md for what lives here."""
