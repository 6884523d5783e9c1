# A valgrind (memcheck) run of a few integration tests: wmharness.py wraps
# every daemon in valgrind when WM_VALGRIND=1 and fails a test whose daemons
# report an invalid access or a definite/indirect leak. A small subset, so it
# finishes in a few minutes on two cores: half-close, allow rules, the PSK
# handshake, 32 parallel transfers, replayed handshakes and reconnects. Only without
# WM_SANITIZE (ASan and valgrind do not mix). Run: ctest -L valgrind.
# Included from tests/integration/CMakeLists.txt (after PYTHON3 is found).
find_program(VALGRIND_EXE valgrind)
if(VALGRIND_EXE AND NOT WM_SANITIZE)
  # script[:--only filter]
  set(WM_VALGRIND_TESTS test_halfclose test_allow test_auth:test_psk
      test_transfer:test_transfer_32 test_replay test_reconnect)
  foreach(spec ${WM_VALGRIND_TESTS})
    string(REPLACE ":" ";" parts ${spec})
    list(GET parts 0 script)
    set(only)
    list(LENGTH parts n)
    if(n GREATER 1)
      list(GET parts 1 filter)
      set(only --only ${filter})
    endif()
    add_test(NAME valgrind/${script}
             COMMAND ${PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/${script}.py
                     --bindir ${PROJECT_BINARY_DIR} ${only})
    set_tests_properties(valgrind/${script} PROPERTIES LABELS valgrind TIMEOUT 900
                         ENVIRONMENT WM_VALGRIND=1 SKIP_RETURN_CODE 77)
  endforeach()
elseif(NOT VALGRIND_EXE)
  message(STATUS "valgrind not found: the valgrind/* tests are not registered")
endif()
