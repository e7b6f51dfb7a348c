// FUZZ_CHECK: the assertion every fuzz target states its properties with.
//
// A failed property prints what was expected and aborts, so libFuzzer records the input as a
// crash exactly as it does for a sanitizer report. Unlike assert(), it is never compiled out.
// Thread safety: the fuzz targets are single-threaded; the macro holds no state.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "%s:%d: property violated: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                   \
      std::fprintf(stderr, "\n");                                                          \
      std::abort();                                                                        \
    }                                                                                      \
  } while (false)
