/*
 * check.h: the tiny test harness shared by the C ABI tests (header-only, one test program per .c).
 *
 * CHECK(expr) prints `ok <file>:<line> <expr>` or `FAIL <file>:<line> <expr>` and counts; the
 * runner (ffi-tests/run) adds up the `ok`/`FAIL` lines of every program and variant. A program
 * exits 1 when any check failed, so a crash or a sanitizer abort is also visible as a bad exit.
 *
 * Include this first: it sets the feature-test macros the POSIX helpers need under -std=c11.
 */
#ifndef FFI_TESTS_CHECK_H
#define FFI_TESTS_CHECK_H

#define _XOPEN_SOURCE 700

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flynnrel.h"

static int check_passed;
static int check_failed;

static inline bool check_report(bool ok, const char *file, int line, const char *expr) {
    if (ok) {
        check_passed++;
        printf("ok %s:%d %s\n", file, line, expr);
    } else {
        check_failed++;
        printf("FAIL %s:%d %s\n", file, line, expr);
    }
    fflush(stdout);
    return ok;
}

#define CHECK(expr) check_report((expr) ? true : false, __FILE__, __LINE__, #expr)

/* CHECK_STATUS(st, want, err): the status is `want`; on failure also prints the error's message. */
#define CHECK_STATUS(st, want, err) check_status_at((st), (want), (err), __FILE__, __LINE__, #st " == " #want)

static inline bool check_status_at(flynnrel_status st, flynnrel_status want, const flynnrel_error *err,
                                   const char *file, int line, const char *expr) {
    bool ok = check_report(st == want, file, line, expr);
    if (!ok) {
        printf("#   got status %u (wanted %u): %s\n", (unsigned)st, (unsigned)want,
               err ? flynnrel_error_message(err) : "(no error object)");
    }
    return ok;
}

/* Prints a diagnostic line (ignored by the runner's counting). */
static inline void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    fputs("\n", stdout);
    va_end(ap);
    fflush(stdout);
}

/* The summary line of one program; returns its exit status. */
static inline int check_done(const char *program) {
    printf("# %s: %d passed, %d failed\n", program, check_passed, check_failed);
    fflush(stdout);
    return check_failed == 0 ? 0 : 1;
}

/* An environment variable the runner must set; exits 2 (a harness error) when it is missing. */
static inline const char *need_env(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        fprintf(stderr, "%s is not set: run the tests through ffi-tests/run\n", name);
        exit(2);
    }
    return v;
}

static inline bool contains(const char *hay, const char *needle) {
    return hay != NULL && needle != NULL && strstr(hay, needle) != NULL;
}

/*
 * Copies the string value of the first `"key":"..."` in compact JSON (what the library emits)
 * into buf; returns false when absent or too long. Values here never contain escapes.
 */
static inline bool json_str(const char *json, const char *key, char *buf, size_t size) {
    char pat[128];
    if (json == NULL || snprintf(pat, sizeof pat, "\"%s\":\"", key) >= (int)sizeof pat) {
        return false;
    }
    const char *p = strstr(json, pat);
    if (p == NULL) {
        return false;
    }
    p += strlen(pat);
    const char *end = strchr(p, '"');
    if (end == NULL || (size_t)(end - p) >= size) {
        return false;
    }
    memcpy(buf, p, (size_t)(end - p));
    buf[end - p] = '\0';
    return true;
}

/* true when `"key":"value"` appears in json. */
static inline bool json_has(const char *json, const char *key, const char *value) {
    char pat[512];
    if (snprintf(pat, sizeof pat, "\"%s\":\"%s\"", key, value) >= (int)sizeof pat) {
        return false;
    }
    return contains(json, pat);
}

/* A fresh directory under $FFI_TMP (the runner's scratch space, removed on exit). */
static inline void temp_dir(char *buf, size_t size, const char *label) {
    snprintf(buf, size, "%s/%s.XXXXXX", need_env("FFI_TMP"), label);
    if (mkdtemp(buf) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", buf, strerror(errno));
        exit(2);
    }
}

static inline bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static inline void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

/* Runs a shell command and returns its whole stdout (malloc'd; the caller frees), or NULL. */
static inline char *run_capture(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        pclose(p);
        return NULL;
    }
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *bigger = realloc(out, cap * 2);
            if (bigger == NULL) {
                free(out);
                pclose(p);
                return NULL;
            }
            out = bigger;
            cap *= 2;
        }
    }
    out[len] = '\0';
    if (pclose(p) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/*
 * The snapshot of `dir` in the one tree-snapshot format ($FIXTURE_SNAPSHOT, script/lib/snapshot:
 * a sorted line per entry with type, mode, size, sha256 and symlink target; empty when `dir`
 * does not exist): equal snapshots mean nothing changed. malloc'd; the caller frees.
 */
static inline char *snapshot(const char *dir) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s'", need_env("FIXTURE_SNAPSHOT"), dir);
    return run_capture(cmd);
}

/* The progress callback state the tests use: counts calls, and cancels on call `cancel_at`. */
typedef struct {
    unsigned long calls;
    unsigned long cancel_at; /* 0 = never cancel */
    bool phase_ok;           /* every phase was a non-empty string */
} progress_state;

static inline bool progress_cb(void *user, const char *phase, uint64_t done, uint64_t total) {
    progress_state *s = user;
    (void)done;
    (void)total;
    s->calls++;
    if (phase == NULL || *phase == '\0') {
        s->phase_ok = false;
    }
    return !(s->cancel_at != 0 && s->calls >= s->cancel_at);
}

static inline progress_state progress_counter(void) {
    progress_state s = {0, 0, true};
    return s;
}

#endif /* FFI_TESTS_CHECK_H */
