// Command gogithub runs go-github against `flynnrel serve` and checks what it reads against
// the release folder on disk (script/test-clients):
//
//	gogithub API_URL ROOT OWNER/REPO
//
// ROOT/OWNER/REPO/TAG/ holds each release's assets, its checksums.sha512 and .release.json.
// It prints one `ok - ...` or `not ok - ...` line per check and exits 1 if any failed.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/google/go-github/v84/github"
)

const perPage = 2

var passed, failed int

func check(ok bool, what string, detail ...any) bool {
	if ok {
		passed++
		fmt.Printf("ok - go-github: %s\n", what)
	} else {
		failed++
		msg := ""
		if len(detail) > 0 {
			msg = ": " + fmt.Sprint(detail...)
		}
		fmt.Printf("not ok - go-github: %s%s\n", what, msg)
	}
	return ok
}

type diskRelease struct {
	meta struct {
		Name       string `json:"name"`
		CreatedAt  string `json:"created_at"`
		Prerelease bool   `json:"prerelease"`
		Draft      bool   `json:"draft"`
	}
	assets map[string][]byte
	sums   map[string]string
}

// readDisk reads every release of the repository in the folder, by tag.
func readDisk(root, fullName string) (map[string]*diskRelease, error) {
	dir := filepath.Join(root, filepath.FromSlash(fullName))
	tags, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]*diskRelease{}
	for _, t := range tags {
		r := &diskRelease{assets: map[string][]byte{}, sums: map[string]string{}}
		d := filepath.Join(dir, t.Name())
		if b, err := os.ReadFile(filepath.Join(d, ".release.json")); err == nil {
			if err := json.Unmarshal(b, &r.meta); err != nil {
				return nil, err
			}
		}
		files, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, f.Name()))
			if err != nil {
				return nil, err
			}
			r.assets[f.Name()] = b
		}
		for _, line := range strings.Split(strings.TrimSpace(string(r.assets["checksums.sha512"])), "\n") {
			if h, n, ok := strings.Cut(line, "  "); ok {
				r.sums[n] = h
			}
		}
		out[t.Name()] = r
	}
	return out, nil
}

func sha512hex(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

func statusOf(err error) int {
	var e *github.ErrorResponse
	if errors.As(err, &e) && e.Response != nil {
		return e.Response.StatusCode
	}
	if err == nil {
		return 200
	}
	return -1
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func run(apiURL, root, fullName string) error {
	owner, name, _ := strings.Cut(fullName, "/")
	api, err := url.Parse(apiURL)
	if err != nil {
		return err
	}
	disk, err := readDisk(root, fullName)
	if err != nil {
		return err
	}
	var visible, drafts []string
	var created []string
	for tag, r := range disk {
		created = append(created, r.meta.CreatedAt)
		if r.meta.Draft {
			drafts = append(drafts, tag)
		} else {
			visible = append(visible, tag)
		}
	}
	sort.Slice(visible, func(i, j int) bool { return disk[visible[i]].meta.CreatedAt > disk[visible[j]].meta.CreatedAt })
	sort.Strings(created)
	var expectedLatest string
	for _, t := range visible {
		if !disk[t].meta.Prerelease {
			expectedLatest = t
			break
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 60 * time.Second}
	c := github.NewClient(hc)
	c.BaseURL, err = url.Parse(apiURL + "/")
	if err != nil {
		return err
	}

	// The repository.
	repo, _, err := c.Repositories.Get(ctx, owner, name)
	if !check(err == nil, "Repositories.Get", err) {
		return err
	}
	check(repo.GetFullName() == fullName && repo.GetName() == name, "Repositories.Get full_name and name", repo.GetFullName())
	check(repo.GetOwner().GetLogin() == owner && repo.GetOwner().GetType() == "Organization" && repo.GetOwner().GetID() > 0,
		"Repositories.Get owner login, type and id", repo.GetOwner())
	check(repo.GetID() > 0 && repo.GetNodeID() != "", "Repositories.Get id and node_id")
	check(!repo.GetPrivate() && repo.GetVisibility() == "public", "Repositories.Get is public")
	check(repo.GetDefaultBranch() == "master", "Repositories.Get default_branch", repo.GetDefaultBranch())
	check(repo.GetURL() == apiURL+"/repos/"+fullName && repo.GetReleasesURL() == repo.GetURL()+"/releases{/id}",
		"Repositories.Get url and releases_url", repo.GetURL(), " ", repo.GetReleasesURL())
	html, _ := url.Parse(repo.GetHTMLURL())
	check(html != nil && html.Port() != api.Port() && strings.HasSuffix(html.Path, "/"+fullName),
		"Repositories.Get html_url on the web host", repo.GetHTMLURL())
	iso := func(t *github.Timestamp) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
	check(iso(repo.CreatedAt) == created[0], "Repositories.Get created_at = oldest release", iso(repo.CreatedAt))
	check(iso(repo.PushedAt) == created[len(created)-1], "Repositories.Get pushed_at = newest release", iso(repo.PushedAt))
	_, _, err = c.Repositories.Get(ctx, owner, "no-such-repo")
	check(statusOf(err) == 404, "Repositories.Get of an unknown repository is 404", err)

	// The same through the GitHub Enterprise prefix go-github adds (/api/v3/).
	ghe, err := github.NewClient(hc).WithEnterpriseURLs(apiURL, apiURL)
	if err == nil {
		var r *github.Repository
		r, _, err = ghe.Repositories.Get(ctx, owner, name)
		check(err == nil && r.GetID() == repo.GetID(), "Repositories.Get under /api/v3 (WithEnterpriseURLs)", err)
	} else {
		check(false, "WithEnterpriseURLs", err)
	}

	// Every release, over several pages.
	var all []*github.RepositoryRelease
	var pageSizes []int
	lastPage := 0
	opt := &github.ListOptions{PerPage: perPage}
	for pages := 0; pages < 50; pages++ {
		rels, resp, err := c.Repositories.ListReleases(ctx, owner, name, opt)
		if !check(err == nil, fmt.Sprintf("ListReleases page %d", opt.Page), err) {
			return err
		}
		if pages == 0 {
			lastPage = resp.LastPage
		}
		all = append(all, rels...)
		pageSizes = append(pageSizes, len(rels))
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	wantPages := (len(visible) + perPage - 1) / perPage
	check(len(pageSizes) == wantPages && lastPage == wantPages,
		fmt.Sprintf("ListReleases follows Link over %d pages of %d (last=%d)", wantPages, perPage, wantPages), pageSizes, " last=", lastPage)
	var tags []string
	byTag := map[string]*github.RepositoryRelease{}
	for _, r := range all {
		tags = append(tags, r.GetTagName())
		byTag[r.GetTagName()] = r
	}
	check(reflect.DeepEqual(tags, visible), fmt.Sprintf("ListReleases lists all %d releases newest first, drafts hidden", len(visible)), tags)

	// No redirect following: the API's 302 must lead to another host name than the API's.
	noFollow := &http.Client{Timeout: 60 * time.Second}
	for _, tag := range visible {
		rel := byTag[tag]
		if !check(rel != nil, tag+": listed") {
			continue
		}
		d := disk[tag]
		check(rel.GetName() == d.meta.Name, tag+": name", rel.GetName())
		check(rel.GetPrerelease() == d.meta.Prerelease && !rel.GetDraft(), tag+": prerelease/draft flags")
		got := map[string]int{}
		for _, a := range rel.Assets {
			got[a.GetName()] = a.GetSize()
		}
		want := map[string]int{}
		for n, b := range d.assets {
			want[n] = len(b)
		}
		check(reflect.DeepEqual(got, want), tag+": asset names and sizes match the folder", got)

		t, _, err := c.Repositories.GetReleaseByTag(ctx, owner, name, tag)
		check(err == nil && t.GetID() == rel.GetID(), tag+": GetReleaseByTag", err)
		i, _, err := c.Repositories.GetRelease(ctx, owner, name, rel.GetID())
		check(err == nil && i.GetTagName() == tag, tag+": GetRelease(id)", err)

		for _, a := range rel.Assets {
			file := d.assets[a.GetName()]
			want := sha512hex(file)
			listed := d.sums[a.GetName()] == want || a.GetName() == "checksums.sha512"
			rc, loc, err := c.Repositories.DownloadReleaseAsset(ctx, owner, name, a.GetID(), nil)
			if rc != nil {
				_ = rc.Close()
			}
			u, _ := url.Parse(loc)
			check(err == nil && rc == nil && u != nil && u.Hostname() != api.Hostname() && isLoopbackHost(u.Hostname()),
				tag+"/"+a.GetName()+": API redirects to a storage host with another name", loc, " ", err)
			rc, _, err = c.Repositories.DownloadReleaseAsset(ctx, owner, name, a.GetID(), http.DefaultClient)
			var body []byte
			if err == nil {
				body, err = io.ReadAll(rc)
				_ = rc.Close()
			}
			check(err == nil && sha512hex(body) == want && listed,
				tag+"/"+a.GetName()+": DownloadReleaseAsset bytes = folder (sha512)", err, " ", len(body), " bytes")
			s := sha256.Sum256(file)
			check(a.GetDigest() == "sha256:"+hex.EncodeToString(s[:]), tag+"/"+a.GetName()+": digest is the file's sha256", a.GetDigest())
		}
		// Once through browser_download_url (web host -> storage host).
		a := rel.Assets[0]
		resp, err := noFollow.Get(a.GetBrowserDownloadURL())
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		check(err == nil && resp.StatusCode == 200 && bytes.Equal(body, d.assets[a.GetName()]),
			tag+"/"+a.GetName()+": browser_download_url bytes = folder", err)
	}

	latest, _, err := c.Repositories.GetLatestRelease(ctx, owner, name)
	check(err == nil && latest.GetTagName() == expectedLatest, "GetLatestRelease skips the prerelease", latest.GetTagName(), err)
	for _, t := range drafts {
		_, _, err := c.Repositories.GetReleaseByTag(ctx, owner, name, t)
		check(statusOf(err) == 404, t+": draft is 404 by tag", err)
	}

	// The rate limit: the body is the window behind the headers, and reading it is free.
	rl, resp, err := c.RateLimit.Get(ctx)
	if !check(err == nil && rl.GetCore() != nil, "RateLimit.Get", err) {
		return err
	}
	core := rl.GetCore()
	check(core.Limit == 5000 && core.Limit == resp.Rate.Limit, "RateLimit.Get core.limit = x-ratelimit-limit", core.Limit, " ", resp.Rate.Limit)
	check(core.Remaining == resp.Rate.Remaining, "RateLimit.Get core.remaining = x-ratelimit-remaining", core.Remaining, " ", resp.Rate.Remaining)
	check(core.Used == resp.Rate.Used && core.Used == core.Limit-core.Remaining && core.Used > 0, "RateLimit.Get core.used = x-ratelimit-used", core.Used)
	check(core.Reset.Equal(resp.Rate.Reset) && core.Reset.After(time.Now()), "RateLimit.Get core.reset = x-ratelimit-reset, in the future")
	check(rl.GetSearch() != nil && rl.GetGraphQL() != nil, "RateLimit.Get has the search and graphql resources")
	again, _, err := c.RateLimit.Get(ctx)
	check(err == nil && again.GetCore().Used == core.Used, "RateLimit.Get itself is not counted", err)
	_, r2, err := c.Repositories.Get(ctx, owner, name)
	check(err == nil && r2.Rate.Used == core.Used+1, "one API call counts one", err)
	after, _, err := c.RateLimit.Get(ctx)
	check(err == nil && after.GetCore().Used == core.Used+1, "RateLimit.Get sees that call", err)
	return nil
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gogithub API_URL ROOT OWNER/REPO")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Printf("not ok - go-github: stopped: %v\n", err)
		failed++
	}
	fmt.Printf("go-github: %d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
