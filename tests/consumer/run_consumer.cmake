# Installs zerotrain from the build tree, then configures, builds and runs tests/consumer against the install.
set(install_dir ${ZT_BUILD_DIR}/consumer/install)
set(consumer_build ${ZT_BUILD_DIR}/consumer/build)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: command failed (${rc}): ${ARGV}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${ZT_BUILD_DIR} --prefix ${install_dir})
run(${CMAKE_COMMAND} -S ${ZT_CONSUMER_SOURCE} -B ${consumer_build} -G ${ZT_GENERATOR}
    "-DCMAKE_PREFIX_PATH=${install_dir}\;${ZT_PREFIX_PATH}")
run(${CMAKE_COMMAND} --build ${consumer_build})
run(${consumer_build}/consumer)
