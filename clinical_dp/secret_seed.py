"""The seed of a run's DP randomness: drawn secretly per run unless a caller gives one.

A DP guarantee assumes noise and batch sampling nobody can predict. A seed fixed in the
code (or printed in a record) lets whoever knows it and the code redraw every noise
draw and subtract it from what was released. So a real run draws its seed from the
operating system's secure source, keeps it only where the run needs it again (inside
the hospital: a resumable run's checkpoint directory, removed when the run finishes)
and records "secret" in its place. An explicit seed stays available for tests and
benchmarks, which must reproduce their figures; such a run's guarantee then holds only
against someone who does not know that seed.
"""

import secrets
from typing import Optional, Union

# 53 bits: more than any brute force over seeds (each guess is a whole DP training run)
# can cover, and small enough that the federated runs' `seed * 1000 + index` stays in
# int64.
SEED_BITS = 53
SECRET = "secret"  # what records say in place of a drawn seed


def draw() -> int:
  """A fresh seed from the operating system's cryptographically secure source."""
  return secrets.randbits(SEED_BITS)


def resolve(seed: Optional[int]) -> int:
  """`seed` when given (reproducible on purpose), else a secret one."""
  return draw() if seed is None else int(seed)


def recorded(seed: Optional[int]) -> Union[int, str]:
  """What a record may say about the seed: an explicit one, else "secret"."""
  return SECRET if seed is None else int(seed)


def describe(seed: Optional[int]) -> str:
  """The privacy records' `randomness` line."""
  if seed is None:
    return "drawn from a secret seed made for this run and never released"
  return (f"drawn from seed {int(seed)}, given to reproduce the run: whoever knows it can "
          "redraw the noise, so the guarantee holds only against those who do not")
