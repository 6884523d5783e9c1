# wm_attack: a misbehaving client for test_attacks.py. It links libwanmux to
# run a real handshake, then breaks the protocol on purpose. Test-only; not
# installed. Included from tests/integration/CMakeLists.txt.
add_executable(wm_attack ${CMAKE_CURRENT_LIST_DIR}/wm_attack.c)
target_link_libraries(wm_attack PRIVATE wanmux)
