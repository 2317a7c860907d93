# Installs the runtime, its public headers and a CMake package:
# find_package(kolo) provides kolo::kolo (and kolo::kolo_torch when built).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/kolo
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT koloTargets NAMESPACE kolo::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kolo)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kolo-config.cmake.in
  ${PROJECT_BINARY_DIR}/kolo-config.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kolo)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kolo-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kolo-config.cmake
              ${PROJECT_BINARY_DIR}/kolo-config-version.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kolo)
