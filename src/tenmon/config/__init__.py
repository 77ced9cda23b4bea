"""tenmon.config: see DESIGN.md for what lives here."""
