/*
 * t_core.c: the functions that need no server: version, version parse/compare, the error
 * accessors and free functions, NULL arguments of every function, option validation, and the
 * install receipt (save/load round trip, legacy, corrupt).
 */
#include "check.h"

/* A value no call may write: out-params must stay untouched on error. */
static char sentinel_byte;
#define SENTINEL_STR (&sentinel_byte)
#define SENTINEL_CLIENT ((flynnrel_client *)(void *)&sentinel_byte)

static void test_version(void) {
    char buf[64];
    CHECK(strcmp(flynnrel_version(), FLYNNREL_VERSION) == 0);
    snprintf(buf, sizeof buf, "%d.%d.%d", FLYNNREL_VERSION_MAJOR, FLYNNREL_VERSION_MINOR,
             FLYNNREL_VERSION_PATCH);
    CHECK(strcmp(buf, FLYNNREL_VERSION) == 0);
    /* A static string: the same pointer every time. */
    CHECK(flynnrel_version() == flynnrel_version());
}

static void test_version_parse(void) {
    char *json = NULL;
    flynnrel_error *err = NULL;
    flynnrel_status st = flynnrel_version_parse("v2024.01.27.10", &json, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_OK, err);
    CHECK(err == NULL);
    CHECK(json_has(json, "version", "v2024.01.27.10"));
    CHECK(json_has(json, "scheme", "dotted_date"));
    CHECK(contains(json, "\"prerelease\":false"));
    flynnrel_string_free(json);

    /* On success *err_out is not written. */
    flynnrel_error *untouched = (flynnrel_error *)(void *)&sentinel_byte;
    json = NULL;
    CHECK_STATUS(flynnrel_version_parse("v1.2.3", &json, &untouched), FLYNNREL_STATUS_OK, NULL);
    CHECK(untouched == (flynnrel_error *)(void *)&sentinel_byte);
    flynnrel_string_free(json);

    json = NULL;
    st = flynnrel_version_parse("v20170116.0p1", &json, NULL);
    CHECK_STATUS(st, FLYNNREL_STATUS_OK, NULL);
    CHECK(json_has(json, "scheme", "flynn_date"));
    flynnrel_string_free(json);

    json = NULL;
    st = flynnrel_version_parse("v1.2.3-rc.1", &json, NULL);
    CHECK_STATUS(st, FLYNNREL_STATUS_OK, NULL);
    CHECK(json_has(json, "scheme", "semver"));
    CHECK(contains(json, "\"prerelease\":true"));
    flynnrel_string_free(json);

    /* Malformed: INVALID_DATA, the message quotes the input, the out-param is untouched. */
    json = SENTINEL_STR;
    st = flynnrel_version_parse("not-a-version", &json, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_DATA, err);
    CHECK(json == SENTINEL_STR);
    CHECK(err != NULL && flynnrel_error_code(err) == FLYNNREL_STATUS_INVALID_DATA);
    CHECK(contains(flynnrel_error_message(err), "not-a-version"));
    flynnrel_error_free(err);

    /* Not UTF-8: INVALID_ARGUMENT naming the argument. */
    err = NULL;
    json = SENTINEL_STR;
    st = flynnrel_version_parse("v1.2.\xff", &json, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(json == SENTINEL_STR);
    CHECK(contains(flynnrel_error_message(err), "UTF-8"));
    flynnrel_error_free(err);
}

static void test_version_compare(void) {
    int r = 42;
    flynnrel_error *err = NULL;
    CHECK_STATUS(flynnrel_version_compare("v2024.01.27.10", "v2024.01.27.9", &r, &err), FLYNNREL_STATUS_OK, err);
    CHECK(r == 1);
    r = 42;
    CHECK_STATUS(flynnrel_version_compare("v2024.01.27.9", "v2024.01.27.10", &r, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(r == -1);
    r = 42;
    CHECK_STATUS(flynnrel_version_compare("v2024.01.27.9", "v2024.01.27.9", &r, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(r == 0);
    r = 42;
    CHECK_STATUS(flynnrel_version_compare("v1.10.0", "v1.9.0", &r, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(r == 1);

    /* Across schemes: VERSION_MISMATCH with a message, and *result_out untouched. */
    r = 42;
    flynnrel_status st = flynnrel_version_compare("v2024.01.27.10", "v1.2.3", &r, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_VERSION_MISMATCH, err);
    CHECK(r == 42);
    CHECK(flynnrel_error_code(err) == FLYNNREL_STATUS_VERSION_MISMATCH);
    CHECK(strlen(flynnrel_error_message(err)) > 0);
    flynnrel_error_free(err);

    /* Without err_out the status alone tells. */
    r = 42;
    CHECK(flynnrel_version_compare("v20170116.0p1", "v1.2.3", &r, NULL) == FLYNNREL_STATUS_VERSION_MISMATCH);
    CHECK(r == 42);

    /* A malformed side: INVALID_DATA, untouched. */
    err = NULL;
    CHECK_STATUS(flynnrel_version_compare("v1.2.3", "garbage", &r, &err), FLYNNREL_STATUS_INVALID_DATA, err);
    CHECK(r == 42);
    CHECK(contains(flynnrel_error_message(err), "garbage"));
    flynnrel_error_free(err);
}

static void test_error_accessors(void) {
    CHECK(flynnrel_error_code(NULL) == FLYNNREL_STATUS_OK);
    CHECK(flynnrel_error_message(NULL) != NULL && strcmp(flynnrel_error_message(NULL), "") == 0);
    flynnrel_error_free(NULL);
    flynnrel_string_free(NULL);
    flynnrel_client_free(NULL);
    flynnrel_client_free(NULL);
    CHECK(true); /* reached: the NULL frees above are no-ops */

    /* Two errors are independent objects; each message lives until its own free. */
    flynnrel_error *e1 = NULL, *e2 = NULL;
    flynnrel_version_parse("bad-one", &(char *){NULL}, &e1);
    flynnrel_version_parse(NULL, &(char *){NULL}, &e2);
    CHECK(e1 != NULL && e2 != NULL && e1 != e2);
    CHECK(flynnrel_error_code(e1) == FLYNNREL_STATUS_INVALID_DATA);
    CHECK(flynnrel_error_code(e2) == FLYNNREL_STATUS_NULL_ARGUMENT);
    const char *m1 = flynnrel_error_message(e1);
    flynnrel_error_free(e2);
    CHECK(contains(m1, "bad-one"));
    CHECK(flynnrel_error_hint_json(e1) == NULL); /* no advice for a bad version string */
    flynnrel_error_free(e1);
    CHECK(flynnrel_error_hint_json(NULL) == NULL);
}

static void test_status_names(void) {
    /* The library names every status of the header; the strings are static (never freed). */
    static const struct {
        flynnrel_status status;
        const char *name;
    } table[] = {
        {FLYNNREL_STATUS_OK, "ok"},
        {FLYNNREL_STATUS_INVALID_ARGUMENT, "invalid_argument"},
        {FLYNNREL_STATUS_IO, "io"},
        {FLYNNREL_STATUS_NETWORK, "network"},
        {FLYNNREL_STATUS_NOT_FOUND, "not_found"},
        {FLYNNREL_STATUS_RATE_LIMITED, "rate_limited"},
        {FLYNNREL_STATUS_INVALID_DATA, "invalid_data"},
        {FLYNNREL_STATUS_CHECKSUM_MISMATCH, "checksum_mismatch"},
        {FLYNNREL_STATUS_SIGNATURE_INVALID, "signature_invalid"},
        {FLYNNREL_STATUS_TOO_LARGE, "too_large"},
        {FLYNNREL_STATUS_VERSION_MISMATCH, "version_mismatch"},
        {FLYNNREL_STATUS_INVALID_RECEIPT, "invalid_receipt"},
        {FLYNNREL_STATUS_DOWNGRADE_REFUSED, "downgrade_refused"},
        {FLYNNREL_STATUS_LOCKED, "locked"},
        {FLYNNREL_STATUS_CANCELLED, "cancelled"},
        {FLYNNREL_STATUS_SMOKE_TEST_FAILED, "smoke_test_failed"},
        {FLYNNREL_STATUS_INSECURE_URL, "insecure_url"},
        {FLYNNREL_STATUS_HTTP_STATUS, "http_status"},
        {FLYNNREL_STATUS_TUF_SOURCE, "tuf_source"},
        {FLYNNREL_STATUS_PANIC, "panic"},
        {FLYNNREL_STATUS_NULL_ARGUMENT, "null_argument"},
        {FLYNNREL_STATUS_UNSUPPORTED, "unsupported"},
        {FLYNNREL_STATUS_CHANNEL_POINTER_EXPIRED, "channel_pointer_expired"},
        {FLYNNREL_STATUS_CHANNEL_POINTER_REPLAYED, "channel_pointer_replayed"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const char *n = flynnrel_status_name(table[i].status);
        if (!CHECK(n != NULL && strcmp(n, table[i].name) == 0)) {
            printf("# status %u: got %s, want %s\n", (unsigned)table[i].status, n ? n : "NULL", table[i].name);
        }
    }
    /* Same pointer every time: a static string. */
    CHECK(flynnrel_status_name(FLYNNREL_STATUS_IO) == flynnrel_status_name(FLYNNREL_STATUS_IO));
    /* A code past the table (a newer library's, or garbage) has no name. */
    CHECK(flynnrel_status_name(FLYNNREL_STATUS_CHANNEL_POINTER_REPLAYED + 1) == NULL);
    CHECK(flynnrel_status_name(UINT32_MAX) == NULL);
    /* The name of an error's code, as a caller would log it. */
    flynnrel_error *err = NULL;
    flynnrel_version_parse("nope", &(char *){NULL}, &err);
    CHECK(strcmp(flynnrel_status_name(flynnrel_error_code(err)), "invalid_data") == 0);
    flynnrel_error_free(err);
}

/*
 * expect_null_arg: `st` is NULL_ARGUMENT, `err` is an error with that code naming `arg`. Frees it.
 */
#define EXPECT_NULL_ARG(call, arg)                                                          \
    do {                                                                                    \
        flynnrel_error *e_ = NULL;                                                          \
        flynnrel_status s_ = call;                                                          \
        CHECK_STATUS(s_, FLYNNREL_STATUS_NULL_ARGUMENT, e_);                                \
        CHECK(e_ != NULL && flynnrel_error_code(e_) == FLYNNREL_STATUS_NULL_ARGUMENT);      \
        CHECK(contains(flynnrel_error_message(e_), arg));                                   \
        flynnrel_error_free(e_);                                                            \
    } while (0)
/* The same call with err_out NULL: same status, nothing written anywhere. */
#define EXPECT_NULL_ARG_NOERR(call) CHECK((call) == FLYNNREL_STATUS_NULL_ARGUMENT)

static void test_null_arguments(void) {
    char *out = SENTINEL_STR;
    int r = 42;
    flynnrel_client *client = NULL;
    char dir[4096];
    temp_dir(dir, sizeof dir, "nullargs");

    /* A real client (no network happens before the pointer checks). */
    CHECK_STATUS(flynnrel_client_new("{\"api_url\":\"http://127.0.0.1:9\",\"token_from_env\":false}", &client, NULL),
                 FLYNNREL_STATUS_OK, NULL);

    EXPECT_NULL_ARG(flynnrel_version_parse(NULL, &out, &e_), "version");
    EXPECT_NULL_ARG(flynnrel_version_parse("v1.2.3", NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_version_parse(NULL, &out, NULL));
    EXPECT_NULL_ARG_NOERR(flynnrel_version_parse("v1.2.3", NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_version_compare(NULL, "v1.2.3", &r, &e_), "a");
    EXPECT_NULL_ARG(flynnrel_version_compare("v1.2.3", NULL, &r, &e_), "b");
    EXPECT_NULL_ARG(flynnrel_version_compare("v1.2.3", "v1.2.4", NULL, &e_), "result_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_version_compare(NULL, NULL, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_receipt_load(NULL, NULL, &out, &e_), "config_dir");
    EXPECT_NULL_ARG(flynnrel_receipt_load(dir, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_receipt_load(NULL, NULL, &out, NULL));

    EXPECT_NULL_ARG(flynnrel_receipt_save(NULL, "{}", &e_), "config_dir");
    EXPECT_NULL_ARG(flynnrel_receipt_save(dir, NULL, &e_), "receipt_json");
    EXPECT_NULL_ARG_NOERR(flynnrel_receipt_save(dir, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_client_new(NULL, NULL, &e_), "client_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_new(NULL, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_client_latest_release(NULL, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_latest_release(client, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_latest_release(NULL, &out, NULL));

    EXPECT_NULL_ARG(flynnrel_client_release_by_tag(NULL, "v1.2.3", &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_release_by_tag(client, NULL, &out, &e_), "tag");
    EXPECT_NULL_ARG(flynnrel_client_release_by_tag(client, "v1.2.3", NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_release_by_tag(client, NULL, &out, NULL));

    EXPECT_NULL_ARG(flynnrel_client_releases(NULL, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_releases(client, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_releases(client, NULL, NULL));

    char opts[4200];
    snprintf(opts, sizeof opts, "{\"root\":\"%s\"}", dir);
    EXPECT_NULL_ARG(flynnrel_client_check_for_update(NULL, opts, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_check_for_update(client, opts, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_check_for_update(client, opts, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_client_update(NULL, opts, NULL, NULL, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_update(client, opts, NULL, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_update(client, opts, NULL, NULL, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_client_install(NULL, opts, NULL, NULL, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_install(client, opts, NULL, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_install(client, opts, NULL, NULL, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_client_download_asset(NULL, "v1.2.3", "a", dir, NULL, NULL, &out, &e_), "client");
    EXPECT_NULL_ARG(flynnrel_client_download_asset(client, NULL, "a", dir, NULL, NULL, &out, &e_), "tag");
    EXPECT_NULL_ARG(flynnrel_client_download_asset(client, "v1.2.3", NULL, dir, NULL, NULL, &out, &e_), "asset");
    EXPECT_NULL_ARG(flynnrel_client_download_asset(client, "v1.2.3", "a", NULL, NULL, NULL, &out, &e_), "dest_dir");
    EXPECT_NULL_ARG(flynnrel_client_download_asset(client, "v1.2.3", "a", dir, NULL, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_client_download_asset(client, "v1.2.3", "a", dir, NULL, NULL, NULL, NULL));

    EXPECT_NULL_ARG(flynnrel_package(NULL, NULL, NULL, &out, &e_), "options_json");
    EXPECT_NULL_ARG(flynnrel_package("{\"version\":\"v2024.01.27.0\"}", NULL, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_package(NULL, NULL, NULL, &out, NULL));

    EXPECT_NULL_ARG(flynnrel_verify(NULL, NULL, &out, &e_), "dir");
    EXPECT_NULL_ARG(flynnrel_verify(dir, NULL, NULL, &e_), "json_out");
    EXPECT_NULL_ARG_NOERR(flynnrel_verify(NULL, NULL, &out, NULL));

    /* No out-param was written by any failing call, and the scratch dir is still empty. */
    CHECK(out == SENTINEL_STR);
    CHECK(r == 42);
    char *snap = snapshot(dir);
    CHECK(snap != NULL && strchr(snap, '\n') == strrchr(snap, '\n')); /* only "." is listed */
    free(snap);
    flynnrel_client_free(client);
}

/* EXPECT_INVALID(call, text): INVALID_ARGUMENT whose message contains `text`, out untouched. */
#define EXPECT_INVALID(call, text)                                                           \
    do {                                                                                     \
        flynnrel_error *e_ = NULL;                                                           \
        char *o_ = SENTINEL_STR;                                                             \
        flynnrel_status s_ = call;                                                           \
        CHECK_STATUS(s_, FLYNNREL_STATUS_INVALID_ARGUMENT, e_);                              \
        CHECK(contains(flynnrel_error_message(e_), text));                                   \
        if (!contains(flynnrel_error_message(e_), text)) {                                   \
            note("message: %s", flynnrel_error_message(e_));                                 \
        }                                                                                    \
        CHECK(o_ == SENTINEL_STR);                                                           \
        flynnrel_error_free(e_);                                                             \
    } while (0)

static void test_bad_options(void) {
    flynnrel_client *client = SENTINEL_CLIENT;
    flynnrel_error *err = NULL;
    char dir[4096], opts[4300];
    temp_dir(dir, sizeof dir, "badopts");

    /* client_new: syntax errors, unknown fields, wrong types, bad values. */
    flynnrel_status st = flynnrel_client_new("{not json", &client, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(contains(flynnrel_error_message(err), "invalid JSON in options_json"));
    CHECK(client == SENTINEL_CLIENT);
    flynnrel_error_free(err);

    err = NULL;
    st = flynnrel_client_new("{\"repository\":\"flynn/flynn\",\"nope\":1}", &client, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(contains(flynnrel_error_message(err), "unknown field `nope`"));
    CHECK(client == SENTINEL_CLIENT);
    flynnrel_error_free(err);

    err = NULL;
    st = flynnrel_client_new("{\"timeout_secs\":\"ten\"}", &client, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(contains(flynnrel_error_message(err), "invalid type"));
    CHECK(client == SENTINEL_CLIENT);
    flynnrel_error_free(err);

    err = NULL;
    st = flynnrel_client_new("[1,2]", &client, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(client == SENTINEL_CLIENT);
    flynnrel_error_free(err);

    err = NULL;
    st = flynnrel_client_new("{\"repository\":\"no-slash\"}", &client, &err);
    CHECK_STATUS(st, FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(contains(flynnrel_error_message(err), "no-slash"));
    CHECK(client == SENTINEL_CLIENT);
    flynnrel_error_free(err);

    /* A client for the option checks of the client functions (none reaches the network). */
    client = NULL;
    CHECK_STATUS(flynnrel_client_new("{\"api_url\":\"http://127.0.0.1:9\",\"token_from_env\":false,\"retries\":0}",
                                     &client, NULL),
                 FLYNNREL_STATUS_OK, NULL);
    CHECK(client != NULL);

    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"bogus\":true}", dir);
    EXPECT_INVALID(flynnrel_client_check_for_update(client, opts, &o_, &e_), "unknown field `bogus`");
    EXPECT_INVALID(flynnrel_client_update(client, opts, NULL, NULL, &o_, &e_), "unknown field `bogus`");
    EXPECT_INVALID(flynnrel_client_install(client, opts, NULL, NULL, &o_, &e_), "unknown field `bogus`");
    EXPECT_INVALID(flynnrel_client_update(client, "{\"root\":", NULL, NULL, &o_, &e_), "invalid JSON in options_json");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"source\":\"svn\"}", dir);
    EXPECT_INVALID(flynnrel_client_update(client, opts, NULL, NULL, &o_, &e_), "svn");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"check\":\"yes\"}", dir);
    EXPECT_INVALID(flynnrel_client_update(client, opts, NULL, NULL, &o_, &e_), "invalid type");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"v2024.01.27.0\",\"channel\":\"stable\"}", dir);
    EXPECT_INVALID(flynnrel_client_install(client, opts, NULL, NULL, &o_, &e_), "either version or channel");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"channel\":\"beta\"}", dir);
    EXPECT_INVALID(flynnrel_client_install(client, opts, NULL, NULL, &o_, &e_), "beta");

    EXPECT_INVALID(flynnrel_package("{}", NULL, NULL, &o_, &e_), "missing field `version`");
    EXPECT_INVALID(flynnrel_package("{\"version\":\"v2024.01.27.0\",\"colour\":1}", NULL, NULL, &o_, &e_),
                   "unknown field `colour`");
    EXPECT_INVALID(flynnrel_package("version=1", NULL, NULL, &o_, &e_), "invalid JSON in options_json");
    EXPECT_INVALID(flynnrel_verify(dir, "{\"key\":\"x\"}", &o_, &e_), "unknown field `key`");

    /* Nothing was created by the refused calls. */
    char *snap = snapshot(dir);
    CHECK(snap != NULL && strchr(snap, '\n') == strrchr(snap, '\n'));
    free(snap);
    flynnrel_client_free(client);
}

static void test_receipts(void) {
    char dir[4096], path[4200];
    char *json = NULL;
    flynnrel_error *err = NULL;

    /* Legacy: no receipt -> a TUF description with legacy:true; nothing is written. */
    temp_dir(dir, sizeof dir, "receipt-legacy");
    CHECK_STATUS(flynnrel_receipt_load(dir, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "source", "tuf"));
    CHECK(contains(json, "\"legacy\":true"));
    CHECK(contains(json, "\"repository\":\""));
    flynnrel_string_free(json);
    json = NULL;
    CHECK_STATUS(flynnrel_receipt_load(dir, "https://tuf.example.org/repo", &json, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(json_has(json, "repository", "https://tuf.example.org/repo"));
    CHECK(contains(json, "\"legacy\":true"));
    flynnrel_string_free(json);
    snprintf(path, sizeof path, "%s/install-source.json", dir);
    CHECK(!exists(path));

    /* Round trip: unknown fields kept, legacy dropped. */
    temp_dir(dir, sizeof dir, "receipt-rt");
    const char *receipt =
        "{\"source\":\"github\",\"repository\":\"acme/flynn-fork\",\"version\":\"v2024.01.27.0\","
        "\"installed_at\":\"2024-01-27T10:00:00Z\",\"channel\":\"stable\","
        "\"x_site\":{\"rack\":7,\"tags\":[\"a\",\"b\"]},\"legacy\":true}";
    err = NULL;
    CHECK_STATUS(flynnrel_receipt_save(dir, receipt, &err), FLYNNREL_STATUS_OK, err);
    snprintf(path, sizeof path, "%s/install-source.json", dir);
    CHECK(exists(path));
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cat '%s'", path);
    char *file = run_capture(cmd);
    CHECK(contains(file, "x_site"));
    CHECK(!contains(file, "legacy"));
    free(file);
    json = NULL;
    CHECK_STATUS(flynnrel_receipt_load(dir, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "source", "github"));
    CHECK(json_has(json, "repository", "acme/flynn-fork"));
    CHECK(json_has(json, "version", "v2024.01.27.0"));
    CHECK(json_has(json, "channel", "stable"));
    CHECK(contains(json, "\"x_site\":{\"rack\":7,\"tags\":[\"a\",\"b\"]}"));
    CHECK(contains(json, "\"legacy\":false"));
    /* What load returns can be saved back unchanged (legacy:false is dropped again). */
    CHECK_STATUS(flynnrel_receipt_save(dir, json, NULL), FLYNNREL_STATUS_OK, NULL);
    char *again = NULL;
    CHECK_STATUS(flynnrel_receipt_load(dir, NULL, &again, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(again != NULL && json != NULL && strcmp(again, json) == 0);
    flynnrel_string_free(again);
    flynnrel_string_free(json);

    /* Saving an invalid receipt is refused and leaves the old one. */
    char *before = snapshot(dir);
    EXPECT_INVALID(flynnrel_receipt_save(dir, "{\"source\":\"github\"", &e_), "invalid receipt JSON");
    EXPECT_INVALID(flynnrel_receipt_save(dir, "{\"source\":\"cvs\",\"repository\":\"a/b\",\"version\":\"\","
                                              "\"installed_at\":\"\"}",
                                         &e_),
                   "cvs");
    EXPECT_INVALID(flynnrel_receipt_save(dir, "{\"source\":\"github\",\"repository\":\"\",\"version\":\"\","
                                              "\"installed_at\":\"\"}",
                                         &e_),
                   "repository");
    char *after = snapshot(dir);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A save is a locked, validated receipt edit: it cannot lower highest_seen_version or swap
     * the pinned key (both refused, the file unchanged). */
    temp_dir(dir, sizeof dir, "receipt-policy");
    CHECK_STATUS(flynnrel_receipt_save(dir,
                                       "{\"source\":\"github\",\"repository\":\"a/b\",\"version\":\"v1.2.0\","
                                       "\"installed_at\":\"\",\"highest_seen_version\":\"v1.3.0\","
                                       "\"public_key\":\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"}",
                                       NULL),
                 FLYNNREL_STATUS_OK, NULL);
    before = snapshot(dir);
    err = NULL;
    CHECK_STATUS(flynnrel_receipt_save(dir,
                                       "{\"source\":\"github\",\"repository\":\"a/b\",\"version\":\"v1.2.0\","
                                       "\"installed_at\":\"\",\"highest_seen_version\":\"v1.1.0\","
                                       "\"public_key\":\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"}",
                                       &err),
                 FLYNNREL_STATUS_DOWNGRADE_REFUSED, err);
    CHECK(contains(flynnrel_error_message(err), "highest_seen_version"));
    flynnrel_error_free(err);
    err = NULL;
    CHECK_STATUS(flynnrel_receipt_save(dir,
                                       "{\"source\":\"github\",\"repository\":\"a/b\",\"version\":\"v1.2.0\","
                                       "\"installed_at\":\"\",\"highest_seen_version\":\"v1.3.0\"}",
                                       &err),
                 FLYNNREL_STATUS_SIGNATURE_INVALID, err);
    /* The advice is a hint (data), never a flag name in the message. */
    CHECK(!contains(flynnrel_error_message(err), "--"));
    CHECK(flynnrel_error_hint_json(err) != NULL &&
          strcmp(flynnrel_error_hint_json(err), "{\"hint\":\"rotate_pinned_key\"}") == 0);
    flynnrel_error_free(err);
    after = snapshot(dir);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* Corrupt: INVALID_RECEIPT naming the file, which stays as it was. */
    temp_dir(dir, sizeof dir, "receipt-corrupt");
    snprintf(path, sizeof path, "%s/install-source.json", dir);
    write_file(path, "{\"source\": \"github\", \"repository\": ");
    before = snapshot(dir);
    json = SENTINEL_STR;
    err = NULL;
    CHECK_STATUS(flynnrel_receipt_load(dir, NULL, &json, &err), FLYNNREL_STATUS_INVALID_RECEIPT, err);
    CHECK(json == SENTINEL_STR);
    CHECK(flynnrel_error_code(err) == FLYNNREL_STATUS_INVALID_RECEIPT);
    CHECK(contains(flynnrel_error_message(err), path));
    CHECK(flynnrel_error_hint_json(err) != NULL &&
          strcmp(flynnrel_error_hint_json(err), "{\"hint\":\"repair_receipt\"}") == 0);
    flynnrel_error_free(err);
    after = snapshot(dir);
    CHECK(before != NULL && after != NULL && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A receipt missing a required field is invalid too. */
    write_file(path, "{\"source\":\"github\",\"repository\":\"flynn/flynn\"}\n");
    err = NULL;
    json = SENTINEL_STR;
    CHECK_STATUS(flynnrel_receipt_load(dir, NULL, &json, &err), FLYNNREL_STATUS_INVALID_RECEIPT, err);
    CHECK(contains(flynnrel_error_message(err), "install-source.json"));
    CHECK(json == SENTINEL_STR);
    flynnrel_error_free(err);
}

int main(void) {
    test_version();
    test_version_parse();
    test_version_compare();
    test_error_accessors();
    test_status_names();
    test_null_arguments();
    test_bad_options();
    test_receipts();
    return check_done("t_core");
}
