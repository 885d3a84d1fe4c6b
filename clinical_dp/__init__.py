"""Shared core of the project: dataset spec, table validation, simulators, CLI."""

import os

# TF Privacy's Keras DP optimizers subclass Keras 2 optimizers, while TF 2.16 defaults to
# Keras 3; the switch only works if it is set before TensorFlow is first imported, and
# every entry point imports this package first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
