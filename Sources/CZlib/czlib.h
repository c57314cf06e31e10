// The system zlib (Debian: zlib1g-dev), for the Testbed's SPDY/3 header compression.
// zlib's init entry points are macros, which Swift cannot call; these wrappers can.
#include <zlib.h>

static inline int czlib_deflate_init(z_streamp stream, int level) {
    return deflateInit(stream, level);
}

static inline int czlib_inflate_init(z_streamp stream) {
    return inflateInit(stream);
}
