# ctest: each ditpoc_bench sub-command, given sizes no host can hold, exits with its error code
# and a message naming the memory it would need, before allocating (no abort, no OOM kill).
#   cmake -DBENCH=<path to ditpoc_bench> -P bench_refuses_oversized.cmake
unset(ENV{DITPOC_SKIP_MEMORY_CHECK})
set(ENV{DITPOC_BENCH_KEEP_BLAS_CORE} 1)  # no re-exec for the BLAS core: nothing is timed here

function(expect_refusal code)
  execute_process(COMMAND ${BENCH} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
  if(NOT rc STREQUAL "${code}" OR NOT err MATCHES "needs [0-9.]+ GB of host memory, [0-9.]+ GB is available")
    message(FATAL_ERROR "ditpoc_bench ${ARGN}: exit ${rc} (want ${code}), stderr: ${err}")
  endif()
  message(STATUS "refused as expected: ${ARGN}: ${err}")
endfunction()

expect_refusal(3 forward --model wan-tiny --batch 100000000 --min-time 0)
expect_refusal(3 forward --model wan-tiny --grid 1024,1024,1024 --batch 1 --min-time 0)
expect_refusal(1 denoise --model wan-tiny --backend cpu --contexts 100000000 --min-time 0)
expect_refusal(3 gemm --shape 100000000x100000x100000)
expect_refusal(3 attention --len 1000000000)
