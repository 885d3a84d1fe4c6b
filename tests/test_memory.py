"""clinical_dp/memory.py: the allocator's free pages go back to the system."""

import pytest

from clinical_dp import memory


@pytest.mark.skipif(memory._glibc() is None, reason="glibc only")  # pylint: disable=protected-access
def test_free_pages_inside_the_heap_go_back_to_the_system():
  assert memory.limit_malloc_arenas()
  blocks = [bytes(16_000) for _ in range(20_000)]  # 320 MB in 16 kB blocks
  kept = blocks[::8]  # every eighth stays: the heap cannot shrink from its top
  del blocks
  before = memory.resident_bytes()
  memory.return_free_memory()
  after = memory.resident_bytes()
  assert len(kept) == 2500
  assert before - after > 150e6, (before, after)
