# Helpers for kolo's tests. Labels: unit (one process), mpi (ranks under
# mpirun), torch, chexnet, launcher, gpu.
find_package(GTest REQUIRED)
include(GoogleTest)

# Environment every multi-rank test runs with: root is allowed, and
# oversubscribed ranks yield instead of spinning.
set(KOLO_MPI_TEST_ENV
  OMPI_ALLOW_RUN_AS_ROOT=1
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  OMPI_MCA_mpi_yield_when_idle=1
  OMPI_MCA_rmaps_base_oversubscribe=1
  OMPI_MCA_btl_vader_single_copy_mechanism=none)

# kolo_add_mpi_test(NAME name TARGET target NP n [ARGS ...] [ENV VAR=VALUE ...]
#                   [LABELS ...] [TIMEOUT seconds])
# Runs the target on n ranks under mpirun through ctest.
function(kolo_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;TARGET;NP;TIMEOUT" "ARGS;ENV;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_test(NAME ${T_NAME}
    COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${T_NP} --oversubscribe
            --bind-to none $<TARGET_FILE:${T_TARGET}> ${T_ARGS})
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "mpi;${T_LABELS}"
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${KOLO_MPI_TEST_ENV};${T_ENV}")
endfunction()
