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

# cauce_embed_files(OUT_VAR DIR PATTERN HEADER NAMESPACE FUNCTION TYPE): compiles the files into
# the library (see EmbedFiles.cmake) and sets OUT_VAR to the generated source.
function(cauce_embed_files out_var dir pattern header namespace function type)
  file(GLOB inputs CONFIGURE_DEPENDS ${dir}/${pattern})
  set(output ${CMAKE_CURRENT_BINARY_DIR}/${function}.cpp)
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND} -DDIR=${dir} -DPATTERN=${pattern} -DOUTPUT=${output} -DHEADER=${header}
            -DNAMESPACE=${namespace} -DFUNCTION=${function} -DTYPE=${type}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    DEPENDS ${inputs} ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    COMMENT "Embedding ${dir}/${pattern}")
  set(${out_var} ${output} PARENT_SCOPE)
endfunction()
