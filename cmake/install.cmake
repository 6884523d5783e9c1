# Install rules besides the programs (installed by their own CMakeLists.txt):
# man pages, systemd units, the sysusers.d entry and the example configs.
#
# `cmake --install build --prefix /usr` must give a complete tree even when
# the build was configured for another prefix, so everything that depends on
# the prefix (unit ExecStart paths, /etc versus PREFIX/etc) is worked out when
# installing, by cmake/install-files.cmake, not when configuring.

set(WM_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "systemd unit directory; relative paths are under the install prefix")
set(WM_SYSUSERSDIR "lib/sysusers.d" CACHE STRING
    "sysusers.d directory; relative paths are under the install prefix")

install(FILES docs/wanmux-server.8 docs/wanmux-client.8
        DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES docs/wanmux-keygen.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES systemd/wanmux.sysusers DESTINATION ${WM_SYSUSERSDIR} RENAME wanmux.conf)
install(FILES README.md SECURITY.md docs/PROTOCOL.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

install(CODE "
  set(WM_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(WM_BINARY_DIR \"${PROJECT_BINARY_DIR}\")
  set(WM_SBINDIR_REL \"${CMAKE_INSTALL_SBINDIR}\")
  set(WM_SYSCONFDIR_CONF \"${CMAKE_INSTALL_SYSCONFDIR}\")
  set(WM_UNITDIR_CONF \"${WM_SYSTEMD_UNITDIR}\")
")
install(SCRIPT ${PROJECT_SOURCE_DIR}/cmake/install-files.cmake)
