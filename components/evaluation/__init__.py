"""Evaluation and privacy audit: utility (train on synthetic, test on real), fidelity,
membership inference and disclosure metrics, and the report that shows them side by side.

Pure NumPy / scikit-learn functions, tested on hand-made data; the TFX component that
runs them on a pipeline's artifacts is components/evaluation_report.py.
"""
