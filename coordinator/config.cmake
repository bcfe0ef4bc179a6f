# coordinator/config.cmake: the campaign config library (config.c) and its unit test.
add_library(rsd_config STATIC ${CMAKE_CURRENT_SOURCE_DIR}/config.c)
rsd_warnings(rsd_config)
target_include_directories(rsd_config PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(rsd_config PUBLIC PkgConfig::YAML rsd_msg)
rsd_add_test(config_test SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/config_test.c LIBS rsd_config
             ARGS ${CMAKE_CURRENT_SOURCE_DIR}/testdata ${PROJECT_SOURCE_DIR}/configs)
target_include_directories(config_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
