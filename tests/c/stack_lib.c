/* A small shared library for the stack tests: a blocking read whose frame must be named with
 * this file's name and line, from the library's own debug info. */
#include <unistd.h>

__attribute__((noinline)) long blocking_read(int fd)
{
    char byte;
    long n = read(fd, &byte, 1); /* line:blocking_read */
    /* Using the result after the call keeps it from being a tail call. */
    return n < 0 ? n : byte + n;
}
