"""tenmon.daemon: see DESIGN.md for what lives here."""
