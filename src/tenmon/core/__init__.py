"""The core: clock, errors, astronomy helpers, time formats, atomic files, offline rules, worker lifelines, the ONNX loader. Imports nothing of tenmon above it."""
