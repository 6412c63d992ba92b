/*
 * t_update.c: install, check_for_update and update against the local release server, in temp
 * roots: V1 installed -> "available" V2 -> cancelled update changes nothing -> "updated" ->
 * "up_to_date"; a cancelled install and the tampered tag change nothing; a TUF receipt routes
 * to the caller ("tuf", not an error).
 */
#include "check.h"

static const char *v1, *v2, *bad;

static flynnrel_client *new_client(void) {
    char opts[2048];
    flynnrel_client *client = NULL;
    flynnrel_error *err = NULL;
    snprintf(opts, sizeof opts,
             "{\"api_url\":\"%s\",\"web_url\":\"%s\",\"token_from_env\":false,\"retry_delay_ms\":5,"
             "\"timeout_secs\":20}",
             need_env("FIXTURE_API_URL"), need_env("FIXTURE_WEB_URL"));
    CHECK_STATUS(flynnrel_client_new(opts, &client, &err), FLYNNREL_STATUS_OK, err);
    flynnrel_error_free(err);
    if (client == NULL) {
        exit(check_done("t_update"));
    }
    return client;
}

/* The target of the symlink `root/usr/local/bin/name`, or "" (static buffer). */
static const char *link_target(const char *root, const char *name) {
    static char target[4096];
    char path[4300];
    snprintf(path, sizeof path, "%s/usr/local/bin/%s", root, name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    return target;
}

/* The report lists root/usr/local/bin/name with the sha512 sha512sum computes for it. */
static bool file_sha512_listed(const char *report, const char *root, const char *name) {
    char path[4300], cmd[4500], entry[4600];
    snprintf(path, sizeof path, "%s/usr/local/bin/%s", root, name);
    snprintf(cmd, sizeof cmd, "sha512sum '%s' | cut -d' ' -f1 | tr -d '\\n'", path);
    char *sum = run_capture(cmd);
    if (sum == NULL) {
        return false;
    }
    snprintf(entry, sizeof entry, "{\"path\":\"%s\",\"sha512\":\"%s\",\"kind\":\"binary\"}", path, sum);
    free(sum);
    return contains(report, entry);
}

/* A root that exists and holds one file, so "nothing changed" is not trivially an empty tree. */
static void root_with_marker(char *root, size_t size, const char *label) {
    char path[4300];
    temp_dir(root, size, label);
    snprintf(path, sizeof path, "%s/marker", root);
    write_file(path, "pre-existing\n");
}

static void test_install_update_cycle(flynnrel_client *client) {
    char root[4096], opts[4300], buf[256], cfg[4300], want[300];
    char *json = NULL;
    flynnrel_error *err = NULL;
    progress_state prog = progress_counter();

    temp_dir(root, sizeof root, "root");
    snprintf(cfg, sizeof cfg, "%s/etc/flynn", root);

    /* Install V1. */
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"%s\"}", root, v1);
    CHECK_STATUS(flynnrel_client_install(client, opts, progress_cb, &prog, &json, &err), FLYNNREL_STATUS_OK, err);
    flynnrel_error_free(err);
    err = NULL;
    CHECK(json_has(json, "version", v1));
    CHECK(contains(json, "\"files\":"));
    CHECK(prog.calls > 0);
    CHECK(prog.phase_ok);
    char *install_json = json ? strdup(json) : NULL;
    flynnrel_string_free(json);
    snprintf(want, sizeof want, "flynn-host.%s", v1);
    CHECK(strcmp(link_target(root, "flynn-host"), want) == 0);
    CHECK(file_sha512_listed(install_json, root, want));
    free(install_json);

    /* Its receipt, through the ABI. */
    json = NULL;
    CHECK_STATUS(flynnrel_receipt_load(cfg, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "source", "github"));
    CHECK(json_has(json, "repository", "flynn/flynn"));
    CHECK(json_has(json, "version", v1));
    CHECK(json_has(json, "api_url", need_env("FIXTURE_API_URL")));
    CHECK(contains(json, "\"legacy\":false"));
    flynnrel_string_free(json);

    /* Check: V2 is available; nothing changes. */
    char *before = snapshot(root);
    snprintf(opts, sizeof opts, "{\"root\":\"%s\"}", root);
    json = NULL;
    CHECK_STATUS(flynnrel_client_check_for_update(client, opts, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "available"));
    CHECK(json_has(json, "current", v1));
    CHECK(json_has(json, "target", v2));
    if (!json_has(json, "status", "available")) {
        note("check_for_update: %s", json ? json : "(null)");
    }
    flynnrel_string_free(json);
    char *after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(after);

    /* An update cancelled by the callback (first call, and a later one): CANCELLED, root unchanged. */
    unsigned long cancel_points[] = {1, 3};
    for (size_t i = 0; i < sizeof cancel_points / sizeof cancel_points[0]; i++) {
        progress_state cancel = progress_counter();
        cancel.cancel_at = cancel_points[i];
        char sentinel;
        json = &sentinel;
        err = NULL;
        CHECK_STATUS(flynnrel_client_update(client, opts, progress_cb, &cancel, &json, &err),
                     FLYNNREL_STATUS_CANCELLED, err);
        CHECK(json == &sentinel);
        CHECK(flynnrel_error_code(err) == FLYNNREL_STATUS_CANCELLED);
        flynnrel_error_free(err);
        after = snapshot(root);
        CHECK(before && after && strcmp(before, after) == 0);
        if (before && after && strcmp(before, after) != 0) {
            note("after a cancel at call %lu the tree changed:\n--- before\n%s--- after\n%s", cancel_points[i],
                 before, after);
        }
        free(after);
    }
    free(before);

    /* Update: V1 -> V2, with progress. */
    prog = progress_counter();
    json = NULL;
    err = NULL;
    CHECK_STATUS(flynnrel_client_update(client, opts, progress_cb, &prog, &json, &err), FLYNNREL_STATUS_OK, err);
    flynnrel_error_free(err);
    err = NULL;
    CHECK(json_has(json, "status", "updated"));
    CHECK(json_has(json, "from", v1));
    CHECK(json_has(json, "to", v2));
    /* The layer both versions share is not downloaded again. */
    CHECK(contains(json, "\"skipped_layers\":[\""));
    if (!json_has(json, "status", "updated")) {
        note("update: %s", json ? json : "(null)");
    }
    CHECK(prog.calls > 0);
    flynnrel_string_free(json);
    snprintf(want, sizeof want, "flynn-host.%s", v2);
    CHECK(strcmp(link_target(root, "flynn-host"), want) == 0);
    json = NULL;
    CHECK_STATUS(flynnrel_receipt_load(cfg, NULL, &json, NULL), FLYNNREL_STATUS_OK, NULL);
    CHECK(json_has(json, "version", v2));
    CHECK(json_str(json, "highest_seen_version", buf, sizeof buf) && strcmp(buf, v2) == 0);
    flynnrel_string_free(json);

    /* Check and update again: up to date, nothing changes. */
    before = snapshot(root);
    json = NULL;
    CHECK_STATUS(flynnrel_client_check_for_update(client, opts, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "up_to_date"));
    CHECK(json_has(json, "current", v2));
    flynnrel_string_free(json);
    json = NULL;
    CHECK_STATUS(flynnrel_client_update(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "up_to_date"));
    flynnrel_string_free(json);
    after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* Going back to V1 is refused by policy unless allowed. */
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"%s\"}", root, v1);
    before = snapshot(root);
    char sentinel;
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_update(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_DOWNGRADE_REFUSED,
                 err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);
    after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);
}

static void test_install_failures(flynnrel_client *client) {
    char root[4096], opts[4300];
    char sentinel;
    char *json;
    flynnrel_error *err;

    /* Install cancelled from the callback: CANCELLED, root unchanged. */
    root_with_marker(root, sizeof root, "root-cancel");
    char *before = snapshot(root);
    progress_state cancel = progress_counter();
    cancel.cancel_at = 2;
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"%s\"}", root, v1);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_install(client, opts, progress_cb, &cancel, &json, &err), FLYNNREL_STATUS_CANCELLED,
                 err);
    CHECK(json == &sentinel);
    CHECK(cancel.calls == 2);
    flynnrel_error_free(err);
    char *after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* The tampered tag: CHECKSUM_MISMATCH, root unchanged. */
    root_with_marker(root, sizeof root, "root-bad");
    before = snapshot(root);
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"%s\"}", root, bad);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_install(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_CHECKSUM_MISMATCH,
                 err);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "flynn-host-linux-amd64.gz"));
    flynnrel_error_free(err);
    after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A version that does not exist: NOT_FOUND, root unchanged. */
    root_with_marker(root, sizeof root, "root-missing");
    before = snapshot(root);
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"version\":\"v1999.01.01.0\"}", root);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_install(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);
    after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* "no_receipt": true lays out the release without writing a receipt. */
    temp_dir(root, sizeof root, "root-noreceipt");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\",\"channel\":\"stable\",\"no_receipt\":true}", root);
    json = NULL;
    err = NULL;
    CHECK_STATUS(flynnrel_client_install(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "version", v2)); /* the stable channel's newest */
    flynnrel_string_free(json);
    char path[4400];
    snprintf(path, sizeof path, "%s/etc/flynn/install-source.json", root);
    CHECK(!exists(path));
    snprintf(path, sizeof path, "%s/usr/local/bin/flynn-host.%s", root, v2);
    CHECK(exists(path));
}

static void test_tuf_receipt(flynnrel_client *client) {
    char root[4096], cfg[4300], opts[4300], cmd[4400];
    char *json = NULL;
    flynnrel_error *err = NULL;

    temp_dir(root, sizeof root, "root-tuf");
    snprintf(cfg, sizeof cfg, "%s/etc/flynn", root);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", cfg);
    CHECK(system(cmd) == 0);
    CHECK_STATUS(flynnrel_receipt_save(cfg,
                                       "{\"source\":\"tuf\",\"repository\":\"https://dl.flynn.io/tuf\","
                                       "\"version\":\"v20170116.0p1\",\"installed_at\":\"\"}",
                                       &err),
                 FLYNNREL_STATUS_OK, err);
    char *before = snapshot(root);
    snprintf(opts, sizeof opts, "{\"root\":\"%s\"}", root);
    CHECK_STATUS(flynnrel_client_update(client, opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "tuf"));
    if (!json_has(json, "status", "tuf")) {
        note("update with a tuf receipt: %s", json ? json : "(null)");
    }
    flynnrel_string_free(json);
    json = NULL;
    CHECK_STATUS(flynnrel_client_check_for_update(client, opts, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "tuf"));
    flynnrel_string_free(json);
    char *after = snapshot(root);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A root with nothing installed is an error that says so, not a TUF install. */
    temp_dir(root, sizeof root, "root-empty");
    snprintf(opts, sizeof opts, "{\"root\":\"%s\"}", root);
    json = NULL;
    err = NULL;
    CHECK_STATUS(flynnrel_client_check_for_update(client, opts, &json, &err), FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(contains(flynnrel_error_message(err), "nothing is installed"));
    CHECK(json == NULL);
    flynnrel_error_free(err);
    err = NULL;

    /* A legacy root (Flynn's own installer: a flynn-host, no receipt) is TUF. */
    temp_dir(root, sizeof root, "root-legacy");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && mkdir -p usr/local/bin && printf '#!/bin/sh\\necho v20210218.0\\n' >usr/local/bin/flynn-host"
             " && chmod 0755 usr/local/bin/flynn-host",
             root);
    CHECK(system(cmd) == 0);
    snprintf(opts, sizeof opts, "{\"root\":\"%s\"}", root);
    json = NULL;
    CHECK_STATUS(flynnrel_client_check_for_update(client, opts, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "status", "tuf"));
    flynnrel_string_free(json);
}

int main(void) {
    v1 = need_env("FIXTURE_V1");
    v2 = need_env("FIXTURE_V2");
    bad = need_env("FIXTURE_TAG_BAD_COMPONENT");
    flynnrel_client *client = new_client();
    test_install_update_cycle(client);
    test_install_failures(client);
    test_tuf_receipt(client);
    flynnrel_client_free(client);
    return check_done("t_update");
}
