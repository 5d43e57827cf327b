// Process-wide malloc tuning for repeated forward (and backward) passes. Every
// torch op allocates its output; glibc serves large blocks with fresh mmaps and
// returns them on free, so each pass page-faults its activations in again
// (measured: 2-5x slower LLM prompt processing; a ViT-B/16 bf16 training step
// 1.4x slower, a quarter of its time in the kernel zeroing pages). Keeping
// freed memory in the heap for reuse removes that cost; the process keeps its
// peak heap instead of shrinking.
#pragma once

namespace flame {

// Serves every allocation from the heap and never trims it (glibc only; a
// no-op elsewhere). Idempotent; the LLM forward (TransformerOptions::
// retain_freed_memory) and the trainer call it.
void retain_freed_memory();

}  // namespace flame
