"""tenmon.drivers: see DESIGN.md for what lives here."""
