# coordinator/report.cmake: the campaign report (report.c: report.json / report.md / report.html from the
# journal alone), its unit test and its rendering test in headless Chromium. Included by
# coordinator/CMakeLists.txt.
add_library(rsd_report STATIC ${CMAKE_CURRENT_SOURCE_DIR}/report.c)
rsd_warnings(rsd_report)
target_include_directories(rsd_report PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(rsd_report PRIVATE RSD_VERSION="${PROJECT_VERSION}")
target_link_libraries(rsd_report PUBLIC rsd_journal rsd_config PkgConfig::JANSSON m)

# report_test: statistics against known values; a journal with known outcomes -> report.json / .md /
# .html; empty and partial campaigns. report_render_test (the same program with --render): report.html
# rendered by headless Chromium (Debian's `chromium`, see ops/pins.sh); the screenshot must exist, have
# the requested size and show the charts. It fails, never skips, when chromium is missing. Its campaign,
# report and screenshot stay in report_render/ in the build directory for a look.
rsd_add_test(report_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/report_test.c LIBS rsd_report PkgConfig::ZLIB
             TIMEOUT 60)
target_include_directories(report_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_compile_definitions(report_test PRIVATE RSD_TEST_VERSION="${PROJECT_VERSION}")
add_test(NAME report_render_test COMMAND report_test --render ${CMAKE_CURRENT_BINARY_DIR}/report_render)
set_tests_properties(report_render_test PROPERTIES TIMEOUT 120)

# `rsd report DIR` (coordinator/rsd.c calls co_report_cli): the command links the report library.
target_link_libraries(rsd PRIVATE rsd_report)
