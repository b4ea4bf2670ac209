// Stands in for the toolkit's header when a test compiles a .cu as C++ (-Icsrc/testing/include).
#pragma once
#include "../cuda_host_emulation.h"
