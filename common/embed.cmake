# Turns a file into a C byte array: cmake -DIN=file -DOUT=file.c -DNAME=sym -P embed.cmake
# The status page is kept as a normal HTML file and compiled into the daemons.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE "${OUT}.tmp"
     "/* Generated from ${IN} by embed.cmake: do not edit. */\n"
     "#include <stddef.h>\n\n#include \"wanmux/admin.h\"\n\n"
     "const unsigned char ${NAME}[] = {\n${body}0};\n"
     "const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
