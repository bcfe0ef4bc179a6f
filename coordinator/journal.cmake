# The campaign journal (journal.c): an SQLite file per campaign. Included by coordinator/CMakeLists.txt.
add_library(rsd_journal STATIC ${CMAKE_CURRENT_SOURCE_DIR}/journal.c)
rsd_warnings(rsd_journal)
target_include_directories(rsd_journal PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(rsd_journal PUBLIC PkgConfig::SQLITE3 rsd_msg)
rsd_add_test(journal_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/journal_test.c LIBS rsd_journal)
target_include_directories(journal_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)

if(RSD_BENCH)
  # What the journal costs: results/s (each its own synchronous=FULL transaction), lease operations/s.
  add_executable(journal_bench ${PROJECT_SOURCE_DIR}/tests/bench/journal_bench.c)
  rsd_warnings(journal_bench)
  target_link_libraries(journal_bench PRIVATE rsd_journal)
endif()
