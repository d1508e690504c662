// zlib (Debian: zlib1g-dev), for gzip-compressed dataset files.
#include <zlib.h>
