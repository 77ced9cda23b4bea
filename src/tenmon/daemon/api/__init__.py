"""The daemon's faces: the HTTP API, the operator page, the Alpaca server."""
