"""l3ic export pipeline: train the model in TensorFlow and export it to ONNX."""
