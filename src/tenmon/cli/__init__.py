"""Operator CLI: `tenmon ...`; talks to the daemon API, never to drivers."""
