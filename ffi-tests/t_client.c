/*
 * t_client.c: the GitHub client against the local release server (flynnrel serve):
 * latest / by tag / list, NOT_FOUND, download_asset (bytes checked with sha512sum, tampered asset
 * refused), and one client shared by several threads.
 */
#include "check.h"

#include <pthread.h>

static const char *v1, *v2, *bad, *latest_tag; /* latest_tag: GitHub's latest (a backport: V1) */

static flynnrel_client *new_client(void) {
    char opts[2048];
    flynnrel_client *client = NULL;
    flynnrel_error *err = NULL;
    snprintf(opts, sizeof opts,
             "{\"repository\":\"%s\",\"api_url\":\"%s\",\"web_url\":\"%s\",\"token_from_env\":false,"
             "\"retry_delay_ms\":5,\"timeout_secs\":20}",
             need_env("FIXTURE_REPO"), need_env("FIXTURE_API_URL"), need_env("FIXTURE_WEB_URL"));
    CHECK_STATUS(flynnrel_client_new(opts, &client, &err), FLYNNREL_STATUS_OK, err);
    flynnrel_error_free(err);
    if (client == NULL) {
        fprintf(stderr, "cannot create a client; giving up\n");
        exit(check_done("t_client"));
    }
    return client;
}

static void test_releases(flynnrel_client *client) {
    char *json = NULL;
    flynnrel_error *err = NULL;

    CHECK_STATUS(flynnrel_client_latest_release(client, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "tag_name", latest_tag));
    CHECK(json != NULL && json[0] == '{');
    flynnrel_string_free(json);

    json = NULL;
    CHECK_STATUS(flynnrel_client_release_by_tag(client, v1, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "tag_name", v1));
    CHECK(json_has(json, "name", "flynn-host-linux-amd64.gz"));
    CHECK(json_has(json, "name", "checksums.sha512"));
    flynnrel_string_free(json);

    json = NULL;
    CHECK_STATUS(flynnrel_client_releases(client, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json != NULL && json[0] == '[');
    CHECK(json_has(json, "tag_name", v1));
    CHECK(json_has(json, "tag_name", v2));
    CHECK(json_has(json, "tag_name", bad));
    /* Exactly the served releases (FIXTURE_REPO_TAGS, space-separated), each listed. */
    int n = 0, served = 1;
    for (const char *p = json; p != NULL && (p = strstr(p, "\"tag_name\":")) != NULL; p++) {
        n++;
    }
    for (const char *p = need_env("FIXTURE_REPO_TAGS"); (p = strchr(p, ' ')) != NULL; p++) {
        served++;
    }
    CHECK(n == served);
    char tags[4096];
    snprintf(tags, sizeof tags, "%s", need_env("FIXTURE_REPO_TAGS"));
    for (char *save = NULL, *tag = strtok_r(tags, " ", &save); tag != NULL; tag = strtok_r(NULL, " ", &save)) {
        CHECK(json_has(json, "tag_name", tag));
    }
    flynnrel_string_free(json);

    /* An unknown tag: NOT_FOUND naming it; the out-param is untouched. */
    char sentinel;
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_release_by_tag(client, "v1999.01.01.0", &json, &err), FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(json == &sentinel);
    CHECK(flynnrel_error_code(err) == FLYNNREL_STATUS_NOT_FOUND);
    CHECK(contains(flynnrel_error_message(err), "v1999.01.01.0"));
    flynnrel_error_free(err);

    /* A repository the server does not have: NOT_FOUND too. */
    flynnrel_client *other = NULL;
    char opts[2048];
    snprintf(opts, sizeof opts, "{\"repository\":\"nobody/nothing\",\"api_url\":\"%s\",\"token_from_env\":false}",
             need_env("FIXTURE_API_URL"));
    CHECK_STATUS(flynnrel_client_new(opts, &other, NULL), FLYNNREL_STATUS_OK, NULL);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_latest_release(other, &json, &err), FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);
    flynnrel_client_free(other);
}

/* The sha512 of `path` as sha512sum prints it (malloc'd) or NULL. */
static char *sha512sum(const char *path) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "sha512sum '%s' | cut -d' ' -f1 | tr -d '\\n'", path);
    return run_capture(cmd);
}

static void test_download_asset(flynnrel_client *client) {
    char dest[4096], want_path[4200], got_path[4200], got_sha[200];
    char *json = NULL;
    flynnrel_error *err = NULL;
    progress_state prog = progress_counter();
    const char *asset = "flynn-host-linux-amd64.gz";

    temp_dir(dest, sizeof dest, "download");
    CHECK_STATUS(flynnrel_client_download_asset(client, v1, asset, dest, progress_cb, &prog, &json, &err),
                 FLYNNREL_STATUS_OK, err);
    snprintf(want_path, sizeof want_path, "%s/%s", dest, asset);
    CHECK(exists(want_path));
    CHECK(json_str(json, "path", got_path, sizeof got_path) && strcmp(got_path, want_path) == 0);
    char *sum = sha512sum(want_path);
    CHECK(sum != NULL && strlen(sum) == 128);
    CHECK(json_str(json, "sha512", got_sha, sizeof got_sha) && sum != NULL && strcmp(got_sha, sum) == 0);
    struct stat st;
    char size_field[64];
    snprintf(size_field, sizeof size_field, "\"size\":%lld", stat(want_path, &st) == 0 ? (long long)st.st_size : -1LL);
    CHECK(contains(json, size_field));
    /* The bytes are the served asset's. */
    char served[4300];
    snprintf(served, sizeof served, "%s/%s/%s/%s", need_env("FIXTURE_SERVE_DIR"), need_env("FIXTURE_REPO"), v1,
             asset);
    char *served_sum = sha512sum(served);
    CHECK(sum != NULL && served_sum != NULL && strcmp(sum, served_sum) == 0);
    CHECK(prog.calls > 0);
    CHECK(prog.phase_ok);
    free(sum);
    free(served_sum);
    flynnrel_string_free(json);

    /* The tampered release: CHECKSUM_MISMATCH naming the asset, and no file left behind. */
    char dest2[4096];
    temp_dir(dest2, sizeof dest2, "download-bad");
    char sentinel;
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_client_download_asset(client, bad, asset, dest2, NULL, NULL, &json, &err),
                 FLYNNREL_STATUS_CHECKSUM_MISMATCH, err);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), asset));
    flynnrel_error_free(err);
    char *snap = snapshot(dest2);
    CHECK(snap != NULL && strchr(snap, '\n') == strrchr(snap, '\n')); /* only "." */
    free(snap);

    /* An asset the release does not have: NOT_FOUND. */
    err = NULL;
    json = &sentinel;
    CHECK_STATUS(flynnrel_client_download_asset(client, v1, "no-such-asset.gz", dest2, NULL, NULL, &json, &err),
                 FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);

    /* A name that would escape dest_dir is refused, and nothing is written outside. */
    err = NULL;
    json = &sentinel;
    char parent_file[4300];
    snprintf(parent_file, sizeof parent_file, "%s/../evil.gz", dest2);
    flynnrel_status s = flynnrel_client_download_asset(client, v1, "../evil.gz", dest2, NULL, NULL, &json, &err);
    CHECK(s != FLYNNREL_STATUS_OK);
    CHECK(json == &sentinel);
    CHECK(!exists(parent_file));
    flynnrel_error_free(err);

    /* Cancelling from the callback: CANCELLED, nothing left. */
    char dest3[4096];
    temp_dir(dest3, sizeof dest3, "download-cancel");
    progress_state cancel = progress_counter();
    cancel.cancel_at = 1;
    err = NULL;
    json = &sentinel;
    CHECK_STATUS(flynnrel_client_download_asset(client, v1, asset, dest3, progress_cb, &cancel, &json, &err),
                 FLYNNREL_STATUS_CANCELLED, err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);
    snap = snapshot(dest3);
    CHECK(snap != NULL && strchr(snap, '\n') == strrchr(snap, '\n'));
    free(snap);
}

/* Several threads share one client: every call must succeed with the right answer. */
enum { THREADS = 4, ROUNDS = 5 };

typedef struct {
    const flynnrel_client *client;
    int ok_latest, ok_list, failures;
    char first_error[256];
} worker_state;

static void *worker(void *arg) {
    worker_state *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        char *json = NULL;
        flynnrel_error *err = NULL;
        flynnrel_status st = flynnrel_client_latest_release(w->client, &json, &err);
        if (st == FLYNNREL_STATUS_OK && json_has(json, "tag_name", latest_tag)) {
            w->ok_latest++;
        } else {
            w->failures++;
            snprintf(w->first_error, sizeof w->first_error, "latest: status %u %s", (unsigned)st,
                     flynnrel_error_message(err));
        }
        flynnrel_string_free(json);
        flynnrel_error_free(err);

        json = NULL;
        err = NULL;
        st = flynnrel_client_releases(w->client, &json, &err);
        if (st == FLYNNREL_STATUS_OK && json_has(json, "tag_name", v1) && json_has(json, "tag_name", bad)) {
            w->ok_list++;
        } else {
            w->failures++;
            snprintf(w->first_error, sizeof w->first_error, "releases: status %u %s", (unsigned)st,
                     flynnrel_error_message(err));
        }
        flynnrel_string_free(json);
        flynnrel_error_free(err);
    }
    return NULL;
}

static void test_threads(flynnrel_client *client) {
    pthread_t t[THREADS];
    worker_state w[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].client = client;
        if (pthread_create(&t[i], NULL, worker, &w[i]) == 0) {
            started++;
        }
    }
    CHECK(started == THREADS);
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
    }
    int latest = 0, list = 0, failures = 0;
    for (int i = 0; i < started; i++) {
        latest += w[i].ok_latest;
        list += w[i].ok_list;
        failures += w[i].failures;
        if (w[i].failures) {
            note("thread %d: %s", i, w[i].first_error);
        }
    }
    CHECK(failures == 0);
    CHECK(latest == THREADS * ROUNDS);
    CHECK(list == THREADS * ROUNDS);
}

int main(void) {
    v1 = need_env("FIXTURE_V1");
    v2 = need_env("FIXTURE_V2");
    bad = need_env("FIXTURE_TAG_BAD_COMPONENT");
    latest_tag = need_env("FIXTURE_LATEST");
    flynnrel_client *client = new_client();
    test_releases(client);
    test_download_asset(client);
    test_threads(client);
    flynnrel_client_free(client);
    return check_done("t_client");
}
