# Compiles SOURCE and passes only if compilation FAILS with a diagnostic
# saying the concept EXPECT (a regex of names) was not satisfied: gcc's
# "required for the satisfaction of 'X'", clang's "does not satisfy 'X'".
# (Matching the bare name would be too weak: every error that mentions
# basic_scheduler prints all four policy concepts in its template head.)
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
if(NOT output MATCHES "(satisfaction of|does not satisfy)[^a-z_]+(${EXPECT})")
  message(FATAL_ERROR "${SOURCE} failed to compile without naming ${EXPECT}:\n${output}")
endif()
message(STATUS "${SOURCE}: rejected, naming ${EXPECT}")
