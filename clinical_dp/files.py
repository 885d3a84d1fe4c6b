"""Writing files so that a reader never sees a half-written one."""

import os
import tempfile
from typing import Callable


def write_atomically(path: str, write: Callable[[str], None]) -> str:
  """Calls `write(tmp)` on a temporary file beside `path`, then renames it into place.

  On any error the temporary file is removed and `path` is left as it was.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".partial")
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def write_text_atomically(path: str, text: str) -> str:
  def write(tmp: str) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
  return write_atomically(path, write)


def copy_tree(source: str, target: str) -> int:
  """Copies every file under source to the same relative path under target (any
  filesystem TensorFlow can reach); returns the number of files."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  copied = 0
  for directory, _, files in tf.io.gfile.walk(source):
    relative = os.path.relpath(directory, source) if directory != source else ""
    destination = os.path.join(target, relative) if relative else target
    tf.io.gfile.makedirs(destination)
    for name in files:
      tf.io.gfile.copy(os.path.join(directory, name), os.path.join(destination, name),
                       overwrite=True)
      copied += 1
  return copied
