"""Prints the CUDA wheels of the installed TensorFlow's `and-cuda` extra, one a line.

The images install each lock file first, then these, so the GPU libraries are exactly
those the locked TensorFlow was built against (CUDA 12.3 for 2.16, CUDA 11.8 for 2.14)
without a second copy of their pins. TensorRT is left out: TensorFlow needs it only for
TF-TRT, and the 8.5 wheels that TensorFlow 2.14 names exist for Python 3.10 at most.

  python -m kubeflow.cuda_requirements > cuda.txt && pip install --no-deps -r cuda.txt
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import List

EXTRA = "and-cuda"
LEFT_OUT = ("tensorrt",)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\(?\s*==\s*([^\s;)]+)\s*\)?\s*;(.*)$")


def cuda_requirements(distribution: str = "tensorflow") -> List[str]:
  """`name==version` for every pinned requirement of the extra, in metadata order."""
  pins = []
  for requirement in metadata.requires(distribution) or []:
    match = _REQUIREMENT.match(requirement)
    if not match or f"extra == '{EXTRA}'" not in match.group(3).replace('"', "'"):
      continue
    name, version = match.group(1), match.group(2)
    if not name.lower().startswith(LEFT_OUT):
      pins.append(f"{name}=={version}")
  if not pins:
    raise SystemExit(f"{distribution} {metadata.version(distribution)} declares no "
                     f"'{EXTRA}' extra; this image cannot be built with GPU support")
  return pins


if __name__ == "__main__":
  print("\n".join(cuda_requirements()))
