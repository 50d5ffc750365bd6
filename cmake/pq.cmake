# Helpers: one static library per layer folder, tests beside the code.
set(PQ_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual)
if(PQ_WERROR)
  list(APPEND PQ_WARNINGS -Werror)
endif()

# pq_add_layer(NAME DEPS dep... [EXCLUDE file.cc...]): builds src/pq/NAME/*.cc (minus
# *_test.cc and the EXCLUDE files, which another target builds) into target pq_NAME, and each
# NAME/*_test.cc into the test binary pq_NAME_test.
function(pq_add_layer name)
  cmake_parse_arguments(ARG "" "" "DEPS;EXCLUDE" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${name}/*.cc)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${name}/*_test.cc)
  if(tests)
    list(REMOVE_ITEM srcs ${tests})
  endif()
  foreach(f ${ARG_EXCLUDE})
    list(REMOVE_ITEM srcs ${CMAKE_CURRENT_SOURCE_DIR}/${name}/${f})
  endforeach()
  add_library(pq_${name} STATIC ${srcs})
  target_include_directories(pq_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(pq_${name} PRIVATE ${PQ_WARNINGS})
  target_link_libraries(pq_${name} PUBLIC ${ARG_DEPS})
  if(PQ_BUILD_TESTS AND tests)
    add_executable(pq_${name}_test ${tests})
    target_compile_options(pq_${name}_test PRIVATE ${PQ_WARNINGS})
    target_link_libraries(pq_${name}_test PRIVATE pq_${name} GTest::gtest GTest::gtest_main)
    target_compile_definitions(pq_${name}_test PRIVATE
        PQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
    gtest_discover_tests(pq_${name}_test DISCOVERY_TIMEOUT 60
        PROPERTIES LABELS ${name})
  endif()
endfunction()
