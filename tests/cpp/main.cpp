// Catch2 main for bricklab's C++ tests.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
