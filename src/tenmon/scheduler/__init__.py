"""tenmon.scheduler: see DESIGN.md for what lives here."""
