"""TensorFlow Federated code and simulation scripts; runs in .venv-federated only."""
