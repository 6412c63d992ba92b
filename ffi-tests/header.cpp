// header.cpp: include/flynnrel.h compiles as C++17 (cbindgen's cpp_compat: extern "C", no C-only
// constructs). Checked with g++ -fsyntax-only by ffi-tests/run; never linked.
#include "flynnrel.h"

#include <cstring>

int main() {
    flynnrel_error *err = nullptr;
    char *json = nullptr;
    flynnrel_status st = flynnrel_version_parse(flynnrel_version(), &json, &err);
    flynnrel_string_free(json);
    flynnrel_error_free(err);
    return st == FLYNNREL_STATUS_OK && std::strcmp(flynnrel_version(), FLYNNREL_VERSION) == 0 ? 0 : 1;
}
