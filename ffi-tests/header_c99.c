/* header_c99.c: include/flynnrel.h compiles alone as strict C99 (checked with -fsyntax-only). */
#include "flynnrel.h"

int main(void) {
    flynnrel_progress_cb cb = NULL;
    (void)cb;
    return flynnrel_error_code(NULL) == FLYNNREL_STATUS_OK && flynnrel_version() != NULL ? 0 : 1;
}
