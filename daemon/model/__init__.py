"""Models: ONNX scoring on the sample tick, drift against the training data, and offline training.

Nothing here is imported by `daemon` unless a model is configured or `depthd train` runs, so the
training libraries stay optional.
"""
