// Command modzip writes the modules of one commit, at the versions given,
// as a GOPROXY directory (the layout of `go help goproxy`: list, .info,
// .mod and .zip under <module>/@v/), so that each module can be built
// against exactly what would be tagged before the tags exist anywhere.
//
//	modzip -repo DIR -rev COMMIT -out PROXYDIR MODULE=SUBDIR@VERSION...
//
// The zips are made by golang.org/x/mod/zip.CreateFromVCS, which the go
// command and proxy.golang.org use for a tagged commit: files of nested
// modules, vendor directories and the like are left out the same way.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func main() {
	repo := flag.String("repo", ".", "the git repository")
	rev := flag.String("rev", "HEAD", "the commit to release")
	out := flag.String("out", "", "the GOPROXY directory to write")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: modzip -repo DIR -rev COMMIT -out PROXYDIR MODULE=SUBDIR@VERSION...")
		os.Exit(2)
	}
	when, err := commitTime(*repo, *rev)
	if err != nil {
		fatal(err)
	}
	for _, arg := range flag.Args() {
		if err := write(*repo, *rev, *out, arg, when); err != nil {
			fatal(err)
		}
	}
}

// write adds one module, given as MODULE=SUBDIR@VERSION (SUBDIR "." for
// the repository's root), to the proxy directory.
func write(repo, rev, out, arg string, when time.Time) error {
	modPath, rest, ok := strings.Cut(arg, "=")
	subdir, version, ok2 := strings.Cut(rest, "@")
	if !ok || !ok2 {
		return fmt.Errorf("%q is not MODULE=SUBDIR@VERSION", arg)
	}
	if subdir == "." {
		subdir = ""
	}
	m := module.Version{Path: modPath, Version: version}
	if err := module.Check(m.Path, m.Version); err != nil {
		return err
	}
	esc, err := module.EscapePath(m.Path)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod, err := git(repo, "show", rev+":"+path.Join(subdir, "go.mod"))
	if err != nil {
		return fmt.Errorf("%s: %v", m, err)
	}
	z, err := os.Create(filepath.Join(dir, version+".zip"))
	if err != nil {
		return err
	}
	if err := modzip.CreateFromVCS(z, m, repo, rev, subdir); err != nil {
		z.Close()
		return fmt.Errorf("%s: %v", m, err)
	}
	if err := z.Close(); err != nil {
		return err
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, when.UTC()})
	files := map[string][]byte{version + ".mod": gomod, version + ".info": info, "list": []byte(version + "\n")}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func commitTime(repo, rev string) (time.Time, error) {
	out, err := git(repo, "log", "-1", "--format=%cI", rev)
	if err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339, strings.TrimSpace(string(out)))
}

func git(repo string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "modzip:", err)
	os.Exit(1)
}
