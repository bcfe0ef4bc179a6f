# Runs one libFuzzer target for a bounded time from a copy of its seed corpus; any crash, leak, timeout
# or out-of-memory makes libFuzzer exit non-zero, which fails the test.
#   -DFUZZER=path -DSEEDS=dir -DWORK=dir ; seconds from the RSD_FUZZ_SECONDS environment variable (30)
set(seconds 30)
if(DEFINED ENV{RSD_FUZZ_SECONDS})
  set(seconds $ENV{RSD_FUZZ_SECONDS})
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/corpus")
file(GLOB seeds "${SEEDS}/*")
file(COPY ${seeds} DESTINATION "${WORK}/corpus")
execute_process(
  COMMAND "${FUZZER}" -max_total_time=${seconds} -timeout=5 -rss_limit_mb=2048 -max_len=70000
          -print_final_stats=1 -artifact_prefix=${WORK}/ "${WORK}/corpus"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer ${FUZZER} failed (exit ${rc}); reproducer in ${WORK}/")
endif()
