# Helpers for kolo's tests. Labels: unit (one process), mpi (ranks under
# mpirun), torch, chexnet, launcher, gpu.
find_package(GTest REQUIRED)
include(GoogleTest)

# How multi-rank tests start ranks with the MPI of this build (KOLO_MPI):
# KOLO_MPIEXEC_FLAGS go before -np; KOLO_MPI_TEST_ENV is the environment of
# every multi-rank test. MPI_UNDER_TEST tells test scripts which MPI's flags
# and rank variables to use (not a KOLO_* name: kolorun would export it).
if(KOLO_MPI STREQUAL "mpich")
  # Hydra runs as root without being told, never refuses more ranks than
  # cores and binds nothing unless asked (-bind-to), so it needs no flags.
  set(KOLO_MPIEXEC_FLAGS "")
  set(KOLO_MPI_TEST_ENV MPI_UNDER_TEST=mpich)
else()
  # Root is allowed, oversubscribed ranks yield instead of spinning, and
  # ranks are not bound to one core each (kolo runs threads besides).
  set(KOLO_MPIEXEC_FLAGS --oversubscribe --bind-to none)
  set(KOLO_MPI_TEST_ENV
    MPI_UNDER_TEST=openmpi
    OMPI_ALLOW_RUN_AS_ROOT=1
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_mpi_yield_when_idle=1
    OMPI_MCA_rmaps_base_oversubscribe=1
    OMPI_MCA_btl_vader_single_copy_mechanism=none)
endif()

# kolo_mpiexec_env(OUT NAME VALUE): the mpiexec arguments that set NAME to
# VALUE for one program of a multi-program (MPMD) command line.
function(kolo_mpiexec_env out name value)
  if(KOLO_MPI STREQUAL "mpich")
    set(${out} -env ${name} ${value} PARENT_SCOPE)
  else()
    set(${out} -x ${name}=${value} PARENT_SCOPE)
  endif()
endfunction()

# kolo_add_mpi_test(NAME name TARGET target NP n [ARGS ...] [ENV VAR=VALUE ...]
#                   [LABELS ...] [TIMEOUT seconds])
# Runs the target on n ranks under mpiexec through ctest.
function(kolo_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;TARGET;NP;TIMEOUT" "ARGS;ENV;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_test(NAME ${T_NAME}
    COMMAND ${MPIEXEC_EXECUTABLE} ${KOLO_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG}
            ${T_NP} $<TARGET_FILE:${T_TARGET}> ${T_ARGS})
  set_tests_properties(${T_NAME} PROPERTIES
    LABELS "mpi;${T_LABELS}"
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${KOLO_MPI_TEST_ENV};${T_ENV}")
endfunction()
