# cauce_library(NAME <folder> SOURCES ... DEPS ...)
# One library target per top-level folder: public headers in <folder>/include/cauce/<folder>/,
# private code in <folder>/src/. The target is exported as cauce::<folder>.
function(cauce_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(cauce_${ARG_NAME} ${ARG_SOURCES})
  add_library(cauce::${ARG_NAME} ALIAS cauce_${ARG_NAME})
  target_include_directories(cauce_${ARG_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                               PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(cauce_${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE cauce_options ${ARG_PRIVATE_DEPS})
endfunction()

# A header-only folder that has no compiled code yet still gets its target, so the dependency
# graph (api -> commands/projections -> core) is already what the code will follow.
function(cauce_interface_library)
  cmake_parse_arguments(ARG "" "NAME" "DEPS" ${ARGN})
  add_library(cauce_${ARG_NAME} INTERFACE)
  add_library(cauce::${ARG_NAME} ALIAS cauce_${ARG_NAME})
  target_include_directories(cauce_${ARG_NAME} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(cauce_${ARG_NAME} INTERFACE ${ARG_DEPS})
endfunction()
