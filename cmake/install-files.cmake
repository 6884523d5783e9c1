# Runs at install time (install(SCRIPT) from cmake/install.cmake), when
# CMAKE_INSTALL_PREFIX is the prefix given to `cmake --install --prefix`.
# (file(INSTALL) adds $DESTDIR itself.) Writes the systemd units with this prefix's paths and the example configs.

# Configure-time dirs that are absolute (as Debian's debhelper passes them)
# win; relative ones follow the install-time prefix, with GNUInstallDirs'
# rule that prefix /usr keeps its configuration in /etc.
if(IS_ABSOLUTE "${WM_SBINDIR_REL}")
  set(WM_SBINDIR "${WM_SBINDIR_REL}")
else()
  set(WM_SBINDIR "${CMAKE_INSTALL_PREFIX}/${WM_SBINDIR_REL}")
endif()
if(IS_ABSOLUTE "${WM_SYSCONFDIR_CONF}")
  set(WM_SYSCONFDIR "${WM_SYSCONFDIR_CONF}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(WM_SYSCONFDIR "/etc")
else()
  set(WM_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/${WM_SYSCONFDIR_CONF}")
endif()
if(IS_ABSOLUTE "${WM_UNITDIR_CONF}")
  set(WM_UNITDIR "${WM_UNITDIR_CONF}")
else()
  set(WM_UNITDIR "${CMAKE_INSTALL_PREFIX}/${WM_UNITDIR_CONF}")
endif()

set(_units "${WM_BINARY_DIR}/installed-units")
file(MAKE_DIRECTORY "${_units}")
foreach(unit wanmux-server.service wanmux-client.service wanmux-client@.service)
  configure_file("${WM_SOURCE_DIR}/systemd/${unit}.in" "${_units}/${unit}" @ONLY)
  file(INSTALL DESTINATION "${WM_UNITDIR}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES "${_units}/${unit}")
endforeach()

# An operator's edited config is never overwritten by a later `make install`
# on the live system; into a DESTDIR (packaging) the examples always go.
foreach(conf server.conf client.conf)
  set(_dest "$ENV{DESTDIR}${WM_SYSCONFDIR}/wanmux/${conf}")
  if("$ENV{DESTDIR}" STREQUAL "" AND EXISTS "${_dest}")
    message(STATUS "Keeping existing: ${_dest}")
  else()
    file(INSTALL DESTINATION "${WM_SYSCONFDIR}/wanmux" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES "${WM_SOURCE_DIR}/examples/${conf}")
  endif()
endforeach()
