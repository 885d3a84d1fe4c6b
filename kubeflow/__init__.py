"""Kubeflow Pipelines v2: KubeflowV2DagRunner script, images, GPU platform spec."""
