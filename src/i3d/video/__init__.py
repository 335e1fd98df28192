"""Video input: decoding, frame-rate resampling, the RGB recipe, and the bundled sample videos."""
