#include "util/allocator.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>
#include <mutex>

namespace flame {

void retain_freed_memory() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    mallopt(M_MMAP_MAX, 0);            // no per-block mmaps: freed blocks go back to the heap
    mallopt(M_TRIM_THRESHOLD, INT_MAX);  // and the heap is not handed back to the kernel
    mallopt(M_TOP_PAD, 64 << 20);        // grow it in 64 MiB steps
  });
#endif
}

}  // namespace flame
