// Recognizes a forward that failed for lack of memory (host allocation, the engine's own memory
// check, or the CUDA allocator), so callers can halve the batch and retry instead of failing.
const OOM_RE = /bad_alloc|out of memory|cannot allocate memory|needs [\d.]+ GB of (host|device) memory|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation/i;

export function isOutOfMemory(e: unknown): boolean {
  return e instanceof Error && OOM_RE.test(e.message);
}
