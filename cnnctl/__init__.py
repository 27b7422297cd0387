"""cnnctl: train, evaluate and explain convolutional networks from YAML files."""

__version__ = "0.1.0"
