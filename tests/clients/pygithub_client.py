#!/usr/bin/env python3
"""PyGithub against `flynnrel serve`: reads everything a client of GitHub Releases reads and
checks it against the release folder on disk.

    pygithub_client.py API_URL ROOT OWNER/REPO

ROOT/OWNER/REPO/TAG/ holds each release's assets, its checksums.sha512 and .release.json.
Prints one `ok - ...` or `not ok - ...` line per check; exits 1 if any failed.

PyGithub follows a storage redirect only to the API's own host and port or to a host in the
API's domain (for a base URL `http://api.X`, `X` and its subdomains), like api.github.com and
objects.githubusercontent.com. The server names its storage host `localhost`, so the API is
reached as `api.localhost`. RFC 6761 reserves `*.localhost` for loopback, but glibc does not
resolve it without systemd's nss-myhostname, so this process resolves `*.localhost` as
`localhost` itself. PyGithub's own code runs unchanged.
"""

import hashlib
import json
import os
import socket
import sys
import urllib.parse

_getaddrinfo = socket.getaddrinfo


def _localhost_names(host, *args, **kwargs):
    if isinstance(host, str) and host.lower().endswith(".localhost"):
        host = "localhost"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _localhost_names

import github  # noqa: E402  (after the resolver shim, which its connections use)
import requests  # noqa: E402

PER_PAGE = 2
CHUNK = 64 * 1024

results = {"passed": 0, "failed": 0}


def check(cond, what, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok - pygithub: {what}")
    else:
        results["failed"] += 1
        print(f"not ok - pygithub: {what}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return cond


def sha512(data):
    return hashlib.sha512(data).hexdigest()


def on_disk(root, full_name):
    """The releases in the folder: tag -> metadata, assets (name -> bytes), checksums."""
    repo_dir = os.path.join(root, *full_name.split("/"))
    out = {}
    for tag in sorted(os.listdir(repo_dir)):
        d = os.path.join(repo_dir, tag)
        meta = {}
        mp = os.path.join(d, ".release.json")
        if os.path.exists(mp):
            with open(mp, encoding="utf-8") as f:
                meta = json.load(f)
        assets = {}
        for n in sorted(os.listdir(d)):
            if not n.startswith("."):
                with open(os.path.join(d, n), "rb") as f:
                    assets[n] = f.read()
        sums = {}
        for line in assets["checksums.sha512"].decode().splitlines():
            h, n = line.split("  ", 1)
            sums[n] = h
        out[tag] = {"meta": meta, "assets": assets, "sums": sums}
    return out


def status_of(fn):
    try:
        fn()
        return 200
    except github.GithubException as e:
        return e.status


def main():
    api_url, root, full_name = sys.argv[1:4]
    owner, name = full_name.split("/")
    api = urllib.parse.urlparse(api_url)
    base_url = f"http://api.localhost:{api.port}"

    disk = on_disk(root, full_name)
    visible = sorted(
        (t for t, r in disk.items() if not r["meta"].get("draft")),
        key=lambda t: disk[t]["meta"]["created_at"],
        reverse=True,
    )
    drafts = [t for t, r in disk.items() if r["meta"].get("draft")]
    expected_latest = next(t for t in visible if not disk[t]["meta"].get("prerelease"))
    created = [r["meta"]["created_at"] for r in disk.values()]

    gh = github.Github(base_url=base_url, per_page=PER_PAGE, retry=None, timeout=30, seconds_between_requests=0)

    # The repository, PyGithub's usual first call.
    repo = gh.get_repo(full_name)
    raw = repo.raw_data
    check(repo.full_name == full_name, "get_repo full_name", repo.full_name)
    check(repo.name == name and repo.owner.login == owner, "get_repo name and owner.login")
    check(repo.owner.type == "Organization" and raw["owner"]["id"] > 0, "get_repo owner type and id")
    check(repo.id > 0 and raw["node_id"], "get_repo id and node_id")
    check(repo.private is False and raw["visibility"] == "public", "get_repo is public")
    check(repo.default_branch == "master", "get_repo default_branch", repo.default_branch)
    check(
        repo.url == f"{base_url}/repos/{full_name}" and repo.releases_url == f"{repo.url}/releases{{/id}}",
        "get_repo url and releases_url",
        f"{repo.url} {repo.releases_url}",
    )
    check(
        urllib.parse.urlparse(repo.html_url).port not in (None, api.port)
        and repo.html_url.endswith(f"/{full_name}"),
        "get_repo html_url on the web host",
        repo.html_url,
    )
    iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    check(iso(repo.created_at) == min(created), "get_repo created_at = oldest release", iso(repo.created_at))
    check(iso(repo.pushed_at) == max(created), "get_repo pushed_at = newest release", iso(repo.pushed_at))
    check(
        status_of(lambda: gh.get_repo(f"{owner}/no-such-repo")) == 404,
        "get_repo of an unknown repository is 404",
    )

    # Every release, over several pages.
    listing = repo.get_releases()
    pages = []
    while True:
        page = listing.get_page(len(pages))
        if not page:
            break
        pages.append(page)
        if len(pages) > 50:
            break
    expected_pages = -(-len(visible) // PER_PAGE)
    check(
        [len(p) for p in pages] == [PER_PAGE] * (len(visible) // PER_PAGE) + ([len(visible) % PER_PAGE] if len(visible) % PER_PAGE else []),
        f"get_releases pages of {PER_PAGE}: {expected_pages} pages",
        str([len(p) for p in pages]),
    )
    releases = list(listing)
    tags = [r.tag_name for r in releases]
    check(tags == visible, f"get_releases lists all {len(visible)} releases newest first, drafts hidden", str(tags))
    check(listing.totalCount == len(visible), "get_releases totalCount", str(listing.totalCount))
    by_tag = {r.tag_name: r for r in releases}

    for tag in visible:
        rel = by_tag.get(tag)
        if not check(rel is not None, f"{tag}: listed"):
            continue
        meta, assets = disk[tag]["meta"], disk[tag]["assets"]
        check(rel.name == meta.get("name", tag), f"{tag}: name", rel.name)
        check(rel.prerelease == bool(meta.get("prerelease")) and rel.draft is False, f"{tag}: prerelease/draft flags")
        got = {a.name: a.size for a in rel.assets}
        check(got == {n: len(b) for n, b in assets.items()}, f"{tag}: asset names and sizes match the folder", str(got))

        # By tag and by id.
        t = repo.get_release(tag)
        check(t.id == rel.id and t.tag_name == tag, f"{tag}: get_release(tag)")
        i = repo.get_release(rel.id)
        check(i.tag_name == tag and i.id == rel.id, f"{tag}: get_release(id)")

        # The bytes, through the API's 302 to the storage host.
        for a in rel.assets:
            status, _, chunks = a.download_asset(chunk_size=CHUNK)
            data = b"".join(chunks)
            want = sha512(assets[a.name])
            # checksums.sha512 cannot list itself; every other asset must be listed with this hash.
            listed = a.name == "checksums.sha512" or disk[tag]["sums"].get(a.name) == want
            check(
                status == 200 and sha512(data) == want and listed,
                f"{tag}/{a.name}: download_asset bytes = folder (sha512)",
                f"status {status}, {len(data)} bytes",
            )
            check(
                a.digest == "sha256:" + hashlib.sha256(assets[a.name]).hexdigest(),
                f"{tag}/{a.name}: digest is the file's sha256",
                str(a.digest),
            )
        # And once through browser_download_url (web host -> storage host), as a browser would.
        a = rel.assets[0]
        r = requests.get(a.browser_download_url, timeout=30)
        check(
            r.status_code == 200 and sha512(r.content) == sha512(assets[a.name]),
            f"{tag}/{a.name}: browser_download_url bytes = folder",
        )

    latest = repo.get_latest_release()
    check(latest.tag_name == expected_latest, "get_latest_release skips the prerelease", latest.tag_name)
    for d in drafts:
        check(status_of(lambda: repo.get_release(d)) == 404, f"{d}: draft is 404 by tag")

    # The rate limit: the body is the window behind the headers, and reading it is free.
    rl = gh.get_rate_limit()
    core = rl.resources.core
    remaining, limit = gh.rate_limiting
    check(core.limit == limit == 5000, "get_rate_limit core.limit = x-ratelimit-limit", f"{core.limit} {limit}")
    check(core.remaining == remaining, "get_rate_limit core.remaining = x-ratelimit-remaining", f"{core.remaining} {remaining}")
    check(core.used == core.limit - core.remaining and core.used > 0, "get_rate_limit core.used counts this run", str(core.used))
    check(gh.rate_limiting_resettime == int(core.reset.timestamp()), "get_rate_limit core.reset = x-ratelimit-reset")
    check(rl.rate.remaining == core.remaining, "get_rate_limit rate = core")
    again = gh.get_rate_limit().resources.core
    check(again.used == core.used, "get_rate_limit itself is not counted", f"{core.used} -> {again.used}")
    gh.get_repo(full_name)
    after = gh.get_rate_limit().resources.core
    check(after.used == core.used + 1, "one API call counts one", f"{core.used} -> {after.used}")

    print(f"pygithub: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
