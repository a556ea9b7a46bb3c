# Runs at install time (see install(CODE) in CMakeLists.txt): writes sluice.pc for the
# prefix being installed to. In: SL_PC_IN, SL_PC_OUT, SL_PC_LIBDIR, SL_PC_INCLUDEDIR,
# SL_PC_VERSION and CMAKE_INSTALL_PREFIX (the --prefix of `cmake --install`).
set(prefix "${CMAKE_INSTALL_PREFIX}")
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${SL_PC_${kind}}")
    set(abs_${kind} "${SL_PC_${kind}}")
    set(pc_${kind} "${SL_PC_${kind}}")
  else()
    set(abs_${kind} "${prefix}/${SL_PC_${kind}}")
    set(pc_${kind} "\${prefix}/${SL_PC_${kind}}")
  endif()
endforeach()
set(libdir "${pc_LIBDIR}")
set(includedir "${pc_INCLUDEDIR}")
set(version "${SL_PC_VERSION}")
configure_file("${SL_PC_IN}" "${SL_PC_OUT}" @ONLY)
file(INSTALL "${SL_PC_OUT}" DESTINATION "${abs_LIBDIR}/pkgconfig" RENAME sluice.pc)
