/*
 * t_package.c: flynnrel_package on a synthetic build tree (script/make-synthetic-build), then
 * flynnrel_verify on the output, on a tampered copy (CHECKSUM_MISMATCH) and with options; a
 * cancelled package leaves no output; a layer cache without the build's layers is NOT_FOUND; the
 * layer options (docs/layers.md): `layers_url_template` leaves layers.tar.gz out and names the
 * template in the report, both options at once are INVALID_ARGUMENT with no output.
 */
#include "check.h"

static void test_package_and_verify(void) {
    const char *build = need_env("FIXTURE_PKG_BUILD_DIR");
    const char *version = need_env("FIXTURE_PKG_VERSION");
    const char *helper = need_env("FFI_HELPER");
    char work[4096], out[4200], opts[16384], path[4400], cmd[20000];
    char *json = NULL;
    flynnrel_error *err = NULL;
    progress_state prog = progress_counter();

    temp_dir(work, sizeof work, "package");
    snprintf(out, sizeof out, "%s/out", work);
    snprintf(opts, sizeof opts,
             "{\"version\":\"%s\",\"repository\":\"flynn/flynn\",\"build_dir\":\"%s\","
             "\"layer_cache\":\"%s/layer-cache\",\"out_dir\":\"%s\",\"helper\":\"%s\",\"threads\":2,\"level\":1}",
             version, build, build, out, helper);

    /* Cancelled: CANCELLED and no output directory. */
    progress_state cancel = progress_counter();
    cancel.cancel_at = 1;
    char sentinel;
    json = &sentinel;
    CHECK_STATUS(flynnrel_package(opts, progress_cb, &cancel, &json, &err), FLYNNREL_STATUS_CANCELLED, err);
    CHECK(json == &sentinel);
    flynnrel_error_free(err);
    err = NULL;
    CHECK(!exists(out));

    /* Packaged. */
    json = NULL;
    CHECK_STATUS(flynnrel_package(opts, progress_cb, &prog, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json != NULL && json[0] == '{');
    CHECK(contains(json, version));
    CHECK(prog.calls > 0);
    flynnrel_string_free(json);
    const char *assets[] = {"checksums.sha512",   "flynn-host-linux-amd64.gz", "flynn-init-linux-amd64.gz",
                            "flynn-linux-amd64.gz", "flynnrel-linux-amd64.gz", "images.json.gz",
                            "bootstrap-manifest.json.gz", "layers.tar.gz", "install-flynn"};
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", out, assets[i]);
        CHECK(exists(path));
        if (!exists(path)) {
            note("missing %s", path);
        }
    }
    /* checksums.sha512 is what sha512sum -c accepts. */
    snprintf(cmd, sizeof cmd, "cd '%s' && sha512sum --quiet -c checksums.sha512 >/dev/null 2>&1", out);
    CHECK(system(cmd) == 0);
    /* The packaged flynn-host is the build's, byte for byte. */
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/flynn-host-linux-amd64.gz' | cmp -s - '%s/bin/flynn-host'", out, build);
    CHECK(system(cmd) == 0);

    /* Verified, without and with the expected repository/version. */
    json = NULL;
    CHECK_STATUS(flynnrel_verify(out, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json_has(json, "dir", out));
    CHECK(contains(json, "\"signature_checked\":false"));
    CHECK(contains(json, "flynn-host-linux-amd64.gz"));
    flynnrel_string_free(json);
    json = NULL;
    snprintf(opts, sizeof opts, "{\"repository\":\"flynn/flynn\",\"version\":\"%s\"}", version);
    CHECK_STATUS(flynnrel_verify(out, opts, &json, &err), FLYNNREL_STATUS_OK, err);
    flynnrel_string_free(json);

    /* A tampered copy: CHECKSUM_MISMATCH naming the file; the copy is not modified. */
    char copy[4300];
    snprintf(copy, sizeof copy, "%s/tampered", work);
    snprintf(cmd, sizeof cmd,
             "cp -a '%s' '%s' && { gzip -dc '%s/flynn-host-linux-amd64.gz'; echo '# tampered'; } | gzip -n "
             "> '%s/flynn-host-linux-amd64.gz'",
             out, copy, out, copy);
    CHECK(system(cmd) == 0);
    char *before = snapshot(copy);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_verify(copy, NULL, &json, &err), FLYNNREL_STATUS_CHECKSUM_MISMATCH, err);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "flynn-host-linux-amd64.gz"));
    flynnrel_error_free(err);
    char *after = snapshot(copy);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A directory that does not exist is an error, not a success. */
    snprintf(path, sizeof path, "%s/no-such-release", work);
    json = &sentinel;
    err = NULL;
    flynnrel_status st = flynnrel_verify(path, NULL, &json, &err);
    CHECK(st != FLYNNREL_STATUS_OK);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "no-such-release"));
    flynnrel_error_free(err);

    /* A missing build tree: an error naming it, no output, and the first output untouched. */
    before = snapshot(out);
    snprintf(opts, sizeof opts,
             "{\"version\":\"%s\",\"build_dir\":\"%s/no-such-build\",\"out_dir\":\"%s/out2\",\"helper\":\"%s\"}",
             version, work, work, helper);
    json = &sentinel;
    err = NULL;
    st = flynnrel_package(opts, NULL, NULL, &json, &err);
    CHECK(st != FLYNNREL_STATUS_OK);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "no-such-build"));
    flynnrel_error_free(err);
    snprintf(path, sizeof path, "%s/out2", work);
    CHECK(!exists(path));
    after = snapshot(out);
    CHECK(before && after && strcmp(before, after) == 0);
    free(before);
    free(after);

    /* A layer cache without this build's layers: NOT_FOUND naming the layer file, the hint names
     * the layer_cache option, no output. */
    snprintf(opts, sizeof opts,
             "{\"version\":\"%s\",\"build_dir\":\"%s\",\"layer_cache\":\"%s/no-such-cache\",\"out_dir\":\"%s/out3\","
             "\"helper\":\"%s\"}",
             version, build, work, work, helper);
    json = &sentinel;
    err = NULL;
    CHECK_STATUS(flynnrel_package(opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_NOT_FOUND, err);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "no-such-cache/"));
    CHECK(contains(flynnrel_error_message(err), ".squashfs"));
    CHECK(flynnrel_error_hint_json(err) != NULL && contains(flynnrel_error_hint_json(err), "\"layer_cache\""));
    flynnrel_error_free(err);
    snprintf(path, sizeof path, "%s/out3", work);
    CHECK(!exists(path));
}

static void test_package_layer_options(void) {
    const char *build = need_env("FIXTURE_PKG_BUILD_DIR");
    const char *version = need_env("FIXTURE_PKG_VERSION");
    const char *helper = need_env("FFI_HELPER");
    char work[4096], out[4200], opts[16384], path[4400];
    char *json = NULL;
    flynnrel_error *err = NULL;
    char sentinel;

    temp_dir(work, sizeof work, "package-layers");
    snprintf(out, sizeof out, "%s/out", work);
    /* Both at once: INVALID_ARGUMENT, no output. */
    snprintf(opts, sizeof opts,
             "{\"version\":\"%s\",\"build_dir\":\"%s\",\"layer_cache\":\"%s/layer-cache\",\"out_dir\":\"%s\","
             "\"helper\":\"%s\",\"layers\":\"oci://ghcr.io/flynn/layers\","
             "\"layers_url_template\":\"https://cdn.example/{id}.squashfs\"}",
             version, build, build, out, helper);
    json = &sentinel;
    CHECK_STATUS(flynnrel_package(opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_INVALID_ARGUMENT, err);
    CHECK(json == &sentinel);
    CHECK(contains(flynnrel_error_message(err), "not both"));
    flynnrel_error_free(err);
    err = NULL;
    CHECK(!exists(out));

    /* External storage: no layers.tar.gz, the template in the report. */
    snprintf(opts, sizeof opts,
             "{\"version\":\"%s\",\"build_dir\":\"%s\",\"layer_cache\":\"%s/layer-cache\",\"out_dir\":\"%s\","
             "\"helper\":\"%s\",\"threads\":2,\"level\":1,"
             "\"layers_url_template\":\"https://cdn.example/flynn/{id}.squashfs\"}",
             version, build, build, out, helper);
    json = NULL;
    CHECK_STATUS(flynnrel_package(opts, NULL, NULL, &json, &err), FLYNNREL_STATUS_OK, err);
    CHECK(json != NULL && contains(json, "\"layer_url_template\":\"https://cdn.example/flynn/{id}.squashfs\""));
    flynnrel_string_free(json);
    snprintf(path, sizeof path, "%s/layers.tar.gz", out);
    CHECK(!exists(path));
    snprintf(path, sizeof path, "%s/images.json.gz", out);
    CHECK(exists(path));
}

int main(void) {
    test_package_and_verify();
    test_package_layer_options();
    return check_done("t_package");
}
