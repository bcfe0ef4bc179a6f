# The inference broker (broker.c): a thread of the coordinator process between sim workers' INFERs and GPU
# workers; part of rsd_server.
find_package(Threads REQUIRED)
target_sources(rsd_server PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/broker.c)
target_link_libraries(rsd_server PUBLIC Threads::Threads)
