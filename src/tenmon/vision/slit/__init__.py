"""The slit encoder's runtime: IR camera model, detector, band and opening readers, tracker, site adaptation (onnxruntime only)."""
