"""The names of what a run may publish, written by ReleasePusher (components/release.py)
and read by the public report, the run summary and the Kubeflow configuration.

    release/                   RELEASE_DIR, under a local run directory (or a bucket URI)
      PRIVACY.md, privacy.json  every privacy record and what releasing them together costs
      synthetic/synthetic.csv   the synthetic patients, with their privacy record
      generator/, dp_classifier/, federated/<algorithm>/, spec/spec.yaml
"""

import os

# Where a run puts what may be published, and only that (ReleasePusher): under a local
# run directory, or under the pipeline root on Kubeflow.
RELEASE_DIR = "release"
RELEASE_PRIVACY_JSON = "privacy.json"  # in it: every privacy record and their total
PRIVACY_MD = "PRIVACY.md"
# One directory per released artifact.
SYNTHETIC = "synthetic"
GENERATOR = "generator"
DP_CLASSIFIER = "dp_classifier"
FEDERATED = "federated"
SPEC = "spec"  # the dataset spec, released when DP statistics of the patients shaped it
SYNTHETIC_CSV = "synthetic.csv"  # in SYNTHETIC, as SyntheticDataGen writes it
SPEC_YAML = "spec.yaml"  # in SPEC
RELEASED_SYNTHETIC_CSV = os.path.join(SYNTHETIC, SYNTHETIC_CSV)  # under RELEASE_DIR
