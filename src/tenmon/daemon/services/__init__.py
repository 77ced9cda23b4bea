"""The daemon's services: night operations, sequencer, centring, Nayuta following, frame service, autofocus, encoder label collection."""
