package main

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// contents are two file contents of different sizes, so that a partial
// write of either is neither.
var contents = [2][]byte{bytes.Repeat([]byte("a"), 3000), bytes.Repeat([]byte("b"), 5000)}

func TestAtomicWriteNeverShowsAPartialFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.pem.ocsp")
	if _, err := writeFileAtomic(path, contents[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []byte
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := os.ReadFile(path)
			if err != nil || (!bytes.Equal(got, contents[0]) && !bytes.Equal(got, contents[1])) {
				bad = append([]byte("read: "), got...)
				return
			}
		}
	}()
	for i := range 300 {
		if _, err := writeFileAtomic(path, contents[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad != nil {
		t.Fatalf("a reader saw a partial or missing file (%d bytes)", len(bad))
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

// TestCrashWriterHelper is the child of TestKillMidWriteLeavesAWholeFile:
// it rewrites one file with the two contents in turn, forever.
func TestCrashWriterHelper(t *testing.T) {
	path := os.Getenv("OCSPFILES_CRASH_FILE")
	if path == "" {
		t.Skip("helper process only")
	}
	for i := 0; ; i++ {
		if _, err := writeFileAtomic(path, contents[i%2]); err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("wrote " + strconv.Itoa(i) + "\n")
	}
}

// TestKillMidWriteLeavesAWholeFile kills a writing process with SIGKILL at
// random moments: the file is always one of the contents, whole, and a
// crash leaves at most a temporary file, which the next start removes.
func TestKillMidWriteLeavesAWholeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.pem.ocsp")
	for round := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterHelper$")
		cmd.Env = append(os.Environ(), "OCSPFILES_CRASH_FILE="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wrote := make(chan struct{}, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "wrote ") {
					select {
					case wrote <- struct{}{}:
					default:
					}
				}
			}
		}()
		select {
		case <-wrote:
		case <-time.After(hang):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child finished no write", round)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		got, err := os.ReadFile(path)
		if err != nil || (!bytes.Equal(got, contents[0]) && !bytes.Equal(got, contents[1])) {
			t.Fatalf("round %d: the file is not whole (%d bytes, %v)", round, len(got), err)
		}
	}
	removeStaleTemps(path)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 || entries[0].Name() != filepath.Base(path) {
		t.Fatalf("left behind after the clean-up: %v", entries)
	}
}

func TestWriteKeepsTheModeOfTheFileItReplaces(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.ocsp")
	if _, err := writeFileAtomic(fresh, contents[0]); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	kept := filepath.Join(dir, "kept.ocsp")
	os.WriteFile(kept, contents[0], 0o600)
	os.Chmod(kept, 0o640)
	if _, err := writeFileAtomic(kept, contents[1]); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(kept); fi.Mode().Perm() != 0o640 {
		t.Fatalf("replaced file mode %v, want 0640", fi.Mode().Perm())
	}
}

// TestWriteKeepsTheOwnerOfTheFileItReplaces: a file another user owns
// (the server's user) stays theirs; only root can do that.
func TestWriteKeepsTheOwnerOfTheFileItReplaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	path := filepath.Join(t.TempDir(), "theirs.ocsp")
	os.WriteFile(path, contents[0], 0o600)
	if err := os.Chown(path, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if _, err := writeFileAtomic(path, contents[1]); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4242 || st.Gid != 4343 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("owner %d:%d mode %v, want 4242:4343 0600", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

// TestSymlinkAtTheOutputIsReplacedNotFollowed: a link planted at the output
// path never makes the daemon write, or remove, the file it points to.
func TestSymlinkAtTheOutputIsReplacedNotFollowed(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	path := filepath.Join(dir, "chain.pem.ocsp")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if same, _ := fileHolds(path, []byte("precious")); same {
		t.Fatal("a link counts as holding its target's content")
	}
	res, err := writeFileAtomic(path, contents[0])
	if err != nil || !res.ReplacedSymlink {
		t.Fatalf("write over a link: %+v, %v", res, err)
	}
	if fi, _ := os.Lstat(path); !fi.Mode().IsRegular() {
		t.Fatal("the link is still there")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatal("the link's target was written")
	}
	os.Remove(path)
	os.Symlink(victim, path)
	if removed, err := removeFile(path); !removed || err != nil {
		t.Fatalf("remove a link: %v %v", removed, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatal("the link's target was removed")
	}
}

func TestSomethingElseAtTheOutputIsLeftAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chain.pem.ocsp")
	os.Mkdir(path, 0o700)
	if _, err := writeFileAtomic(path, contents[0]); !errors.Is(err, errNotRegular) {
		t.Fatalf("write over a directory: %v", err)
	}
	if _, err := removeFile(path); !errors.Is(err, errNotRegular) {
		t.Fatalf("remove a directory: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		t.Fatal("the directory was touched")
	}
}
