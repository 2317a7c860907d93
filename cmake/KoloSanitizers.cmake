# KOLO_SANITIZE=address|thread|undefined instruments every target of the
# build tree (use a tree of its own; scripts/sanitizers.sh builds build-asan/
# and build-tsan/ and runs the runtime's tests in them):
#   address    AddressSanitizer and UndefinedBehaviorSanitizer together
#   thread     ThreadSanitizer
#   undefined  UndefinedBehaviorSanitizer alone
# Undefined behaviour aborts the process (-fno-sanitize-recover) so that a
# test which hits it fails instead of printing a line nobody reads. Run-time
# options and the suppressions for uninstrumented third-party libraries are
# in tests/sanitizers/.
set(_kolo_sanitize_flags "")
if(KOLO_SANITIZE STREQUAL "address")
  set(_kolo_sanitize_flags -fsanitize=address,undefined
      -fno-sanitize-recover=undefined)
elseif(KOLO_SANITIZE STREQUAL "thread")
  set(_kolo_sanitize_flags -fsanitize=thread)
elseif(KOLO_SANITIZE STREQUAL "undefined")
  set(_kolo_sanitize_flags -fsanitize=undefined -fno-sanitize-recover=undefined)
elseif(NOT KOLO_SANITIZE STREQUAL "")
  message(FATAL_ERROR
    "KOLO_SANITIZE must be address, thread or undefined, not '${KOLO_SANITIZE}'")
endif()
if(_kolo_sanitize_flags)
  add_compile_options(${_kolo_sanitize_flags} -fno-omit-frame-pointer)
  add_link_options(${_kolo_sanitize_flags})
  message(STATUS "kolo: sanitizer: ${KOLO_SANITIZE}")
endif()
unset(_kolo_sanitize_flags)

# KOLO_THREAD_SAFETY=ON: clang's thread-safety analysis as errors: every
# field marked ABSL_GUARDED_BY is only touched with its mutex held, functions
# marked ABSL_EXCLUSIVE_LOCKS_REQUIRED are only called so, and mutexes are
# taken in their declared order (ABSL_ACQUIRED_AFTER). scripts/thread_safety.sh
# builds the runtime and the LibTorch adapter this way (build-tsa/); CI runs
# it.
option(KOLO_THREAD_SAFETY "clang -Wthread-safety as errors" OFF)
if(KOLO_THREAD_SAFETY)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KOLO_THREAD_SAFETY needs clang (CXX=clang++), not "
                        "${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options(
    $<$<COMPILE_LANGUAGE:CXX>:-Wthread-safety>
    $<$<COMPILE_LANGUAGE:CXX>:-Wthread-safety-beta>
    $<$<COMPILE_LANGUAGE:CXX>:-Werror=thread-safety>
    $<$<COMPILE_LANGUAGE:CXX>:-Werror=thread-safety-beta>)
  message(STATUS "kolo: thread-safety analysis")
endif()
