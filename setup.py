"""Installs the pipeline packages and the `clinical-dp` command.

Dependencies are pinned in requirements/*.lock and installed by scripts/setup.sh;
install_requires only names what the code imports directly.
"""

from setuptools import find_packages, setup

setup(
    name="clinical-dp",
    version="0.1.0",
    description="Privacy-preserving TFX pipeline for clinical data: DP synthetic patients, "
                "DP classifiers, DP federated learning",
    python_requires=">=3.10",
    packages=find_packages(include=["clinical_dp", "clinical_dp.*", "pipelines", "pipelines.*",
                                    "components", "components.*", "trainers", "trainers.*",
                                    "federated", "federated.*", "kubeflow", "kubeflow.*",
                                    "cli", "cli.*"]),
    # The public library of clinical variables that `clinical-dp spec draft` reads.
    package_data={"clinical_dp": ["spec_library/*.yaml"]},
    install_requires=["numpy", "pandas", "pyyaml"],
    entry_points={"console_scripts": ["clinical-dp=cli.main:main"]},
)
