// Process-wide malloc tuning for repeated forward passes. Every torch op
// allocates its output; glibc serves large blocks with fresh mmaps and returns
// them on free, so each pass page-faults its activations in again (measured:
// 2-5x slower prompt processing). Keeping freed memory in the heap for reuse
// removes that cost; the process keeps its peak heap instead of shrinking.
#pragma once

namespace flame::llm {

// Serves every allocation from the heap and never trims it (glibc only; a
// no-op elsewhere). Idempotent; TransformerOptions::retain_freed_memory calls it.
void retain_freed_memory();

}  // namespace flame::llm
