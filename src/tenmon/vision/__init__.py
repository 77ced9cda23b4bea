"""tenmon.vision: see DESIGN.md for what lives here."""
