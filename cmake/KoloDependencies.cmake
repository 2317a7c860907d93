# Finds kolo's dependencies (all Debian 12 packages; see scripts/install-deps.sh).
find_package(Threads REQUIRED)

# One MPI per build: KOLO_MPI=openmpi (default) or mpich. Debian installs
# both side by side with suffixed wrappers and launchers (mpicc.openmpi,
# mpicc.mpich, mpiexec.hydra) while the unsuffixed names follow the
# alternatives system (Open MPI when both are installed), so the suffixed
# names are preferred here and a build never mixes one MPI's headers with
# the other's launcher. Elsewhere the plain mpicc/mpiexec on PATH are used
# and must belong to the chosen MPI (checked below).
set(KOLO_MPI openmpi CACHE STRING "MPI implementation to build against: openmpi or mpich")
set_property(CACHE KOLO_MPI PROPERTY STRINGS openmpi mpich)
if(KOLO_MPI STREQUAL "openmpi")
  set(kolo_mpi_suffix openmpi)
  set(kolo_mpiexec_names mpirun.openmpi mpirun mpiexec)
elseif(KOLO_MPI STREQUAL "mpich")
  set(kolo_mpi_suffix mpich)
  set(kolo_mpiexec_names mpiexec.hydra mpiexec.mpich mpiexec mpirun)
else()
  message(FATAL_ERROR "KOLO_MPI='${KOLO_MPI}': choose openmpi or mpich")
endif()
foreach(kolo_mpi_lang C CXX)
  if(kolo_mpi_lang STREQUAL "C")
    set(kolo_mpi_wrappers mpicc.${kolo_mpi_suffix} mpicc)
  else()
    set(kolo_mpi_wrappers mpicxx.${kolo_mpi_suffix} mpic++.${kolo_mpi_suffix} mpicxx mpic++)
  endif()
  if(NOT MPI_${kolo_mpi_lang}_COMPILER)
    find_program(MPI_${kolo_mpi_lang}_COMPILER NAMES ${kolo_mpi_wrappers})
  endif()
endforeach()
if(NOT MPIEXEC_EXECUTABLE)
  find_program(MPIEXEC_EXECUTABLE NAMES ${kolo_mpiexec_names})
endif()
# FindMPI then reads the library's version string (a small test program).
set(MPI_DETERMINE_LIBRARY_VERSION TRUE)
find_package(MPI REQUIRED COMPONENTS C CXX)
if(MPI_C_LIBRARY_VERSION_STRING MATCHES "Open MPI")
  set(KOLO_MPI_FOUND_NAME openmpi)
elseif(MPI_C_LIBRARY_VERSION_STRING MATCHES "MPICH")
  set(KOLO_MPI_FOUND_NAME mpich)
else()
  set(KOLO_MPI_FOUND_NAME unknown)
endif()
if(NOT KOLO_MPI_FOUND_NAME STREQUAL KOLO_MPI)
  message(FATAL_ERROR "KOLO_MPI=${KOLO_MPI}, but the MPI found through "
    "${MPI_C_COMPILER} is '${MPI_C_LIBRARY_VERSION_STRING}'. Install it "
    "(Debian: libopenmpi-dev openmpi-bin, or libmpich-dev mpich) or point "
    "MPI_C_COMPILER, MPI_CXX_COMPILER and MPIEXEC_EXECUTABLE at its wrappers.")
endif()
execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version
  OUTPUT_VARIABLE kolo_mpiexec_version ERROR_VARIABLE kolo_mpiexec_version
  RESULT_VARIABLE kolo_mpiexec_result)
if((KOLO_MPI STREQUAL "openmpi" AND NOT kolo_mpiexec_version MATCHES "Open MPI|OpenRTE")
   OR (KOLO_MPI STREQUAL "mpich" AND NOT kolo_mpiexec_version MATCHES "HYDRA"))
  message(FATAL_ERROR "KOLO_MPI=${KOLO_MPI}, but ${MPIEXEC_EXECUTABLE} is "
    "another MPI's launcher; set MPIEXEC_EXECUTABLE to ${KOLO_MPI}'s.")
endif()
string(REGEX REPLACE "[,\n].*" "" kolo_mpi_summary "${MPI_C_LIBRARY_VERSION_STRING}")
string(REGEX REPLACE "^MPICH Version:[ \t]*" "MPICH " kolo_mpi_summary "${kolo_mpi_summary}")
message(STATUS "kolo: MPI: ${kolo_mpi_summary} (KOLO_MPI=${KOLO_MPI}), "
  "launcher ${MPIEXEC_EXECUTABLE}")
find_package(absl REQUIRED)
find_package(Protobuf REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
find_package(PkgConfig REQUIRED)

# LibTorch (Debian's CPU build, or a CUDA build found through CMAKE_PREFIX_PATH).
set(KOLO_HAVE_TORCH OFF)
if(NOT KOLO_WITH_TORCH STREQUAL "OFF")
  if(KOLO_WITH_TORCH STREQUAL "ON")
    find_package(Torch REQUIRED)
  else()
    find_package(Torch QUIET)
  endif()
  if(Torch_FOUND)
    set(KOLO_HAVE_TORCH ON)
    # LibTorch 2.14's headers refuse to compile before C++20
    # ("C++20 or later compatible compiler is required to use ATen").
    if(Torch_VERSION VERSION_GREATER_EQUAL 2.14 AND CMAKE_CXX_STANDARD LESS 20)
      message(STATUS "kolo: LibTorch ${Torch_VERSION} needs C++20")
      set(CMAKE_CXX_STANDARD 20)
    endif()
  endif()
endif()
message(STATUS "kolo: LibTorch adapter and CheXNet example: ${KOLO_HAVE_TORCH}")

# <torch/torch.h> costs most of a minute per translation unit on a small
# machine; every target that includes it reuses one precompiled copy. GCC
# accepts a precompiled header only with the same -fPIC/-fPIE setting, so
# libraries and executables get one each.
if(KOLO_HAVE_TORCH)
  add_library(kolo_torch_pch STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cc)
  target_link_libraries(kolo_torch_pch PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(kolo_torch_pch PRIVATE <torch/torch.h>)
  add_library(kolo_torch_pch_exe OBJECT ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cc)
  set_target_properties(kolo_torch_pch_exe PROPERTIES
    POSITION_INDEPENDENT_CODE OFF)
  target_compile_options(kolo_torch_pch_exe PRIVATE -fPIE)
  target_link_libraries(kolo_torch_pch_exe PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(kolo_torch_pch_exe PRIVATE <torch/torch.h>)
endif()
# Even with it a LibTorch translation unit costs 20-30 s here, most of it
# the code generated again in every unit for the same inline LibTorch
# templates: the LibTorch targets are unity builds (their sources compiled
# in batches of KOLO_UNITY_BATCH_SIZE as one unit each; measured on 2 cores,
# cold build: 2053 s of compiler CPU time file by file, 1710 s unity).
# The thread-safety build (KOLO_THREAD_SAFETY) compiles two of the adapter's
# files only: cheaper without the precompiled header, and file by file.
option(KOLO_UNITY_BUILD "Compile the LibTorch targets as unity builds" ON)
set(KOLO_UNITY_BATCH_SIZE 8 CACHE STRING
  "Source files per unit in the LibTorch targets' unity builds")
function(kolo_use_torch_pch)
  if(TARGET kolo_torch_pch AND NOT KOLO_THREAD_SAFETY)
    foreach(target ${ARGN})
      get_target_property(type ${target} TYPE)
      if(type STREQUAL "EXECUTABLE")
        target_precompile_headers(${target} REUSE_FROM kolo_torch_pch_exe)
      else()
        target_precompile_headers(${target} REUSE_FROM kolo_torch_pch)
      endif()
      if(KOLO_UNITY_BUILD)
        set_target_properties(${target} PROPERTIES UNITY_BUILD ON
          UNITY_BUILD_BATCH_SIZE ${KOLO_UNITY_BATCH_SIZE})
      endif()
    endforeach()
  endif()
endfunction()

# CUDA and NCCL (found in /usr/local/cuda on the build machines).
set(KOLO_HAVE_NCCL OFF)
if(NOT KOLO_WITH_NCCL STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(KOLO_HAVE_NCCL ON)
  elseif(KOLO_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "KOLO_WITH_NCCL=ON but CUDA or NCCL was not found")
  endif()
endif()
message(STATUS "kolo: NCCL backend: ${KOLO_HAVE_NCCL}")
if(KOLO_HAVE_NCCL)
  # The backend's one .cu file (runtime/backend/nccl/copy_kernel.cu). A100
  # (sm_80) and H100/H200 (sm_90) by default; -DCMAKE_CUDA_ARCHITECTURES=...
  # overrides. enable_language() must run at the top directory, which
  # includes this file.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "CUDA architectures")
  endif()
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
    set(CMAKE_CUDA_COMPILER ${CUDAToolkit_NVCC_EXECUTABLE})
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
endif()
