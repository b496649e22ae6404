package cache

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/staplerkit/ocsp/internal/record"
)

// TestCrashWriterHelper is the child of TestKillMidWriteLosesNothing: it
// writes ever newer values to one key and reports each finished write.
func TestCrashWriterHelper(t *testing.T) {
	dir := os.Getenv("STAPLERKIT_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	start, _ := strconv.Atoi(os.Getenv("STAPLERKIT_CRASH_START"))
	s := DirStore(dir)
	payload := make([]byte, 2000) // about the size of a response with a delegate
	for i := start; ; i++ {
		binary.BigEndian.PutUint64(payload, uint64(i))
		if err := s.Put(context.Background(), "k", record.Encode(payload, time.Unix(int64(i), 0))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("wrote", i)
	}
}

// TestKillMidWriteLosesNothing kills a writing process with SIGKILL at
// random moments and checks that the value on disk is always whole and
// never older than the last write the child finished.
func TestKillMidWriteLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	s := DirStore(dir)
	acked := -1
	for round := range 15 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterHelper$")
		cmd.Env = append(os.Environ(), "STAPLERKIT_CRASH_DIR="+dir, "STAPLERKIT_CRASH_START="+strconv.Itoa(acked+1))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan int, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "wrote "); ok {
					i, _ := strconv.Atoi(n)
					lines <- i
				}
			}
		}()
		// Wait for the child's first finished write (a race-built child
		// on a busy machine takes hundreds of milliseconds to get there;
		// only a hang reaches the limit), then let it write a little
		// longer and kill it wherever it is.
		select {
		case i, ok := <-lines:
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: the child exited before its first write", round)
			}
			acked = max(acked, i)
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child finished no write in a minute", round)
		}
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		cmd.Process.Kill()
		for i := range lines {
			acked = max(acked, i)
		}
		cmd.Wait()

		value, err := s.Get(context.Background(), "k")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		raw, _, err := record.Decode(value)
		if err != nil {
			t.Fatalf("round %d: value on disk is damaged: %v", round, err)
		}
		if got := int(binary.BigEndian.Uint64(raw)); got < acked {
			t.Fatalf("round %d: disk holds write %d, but write %d had finished", round, got, acked)
		} else {
			acked = got
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "k" && !strings.HasPrefix(e.Name(), ".k.tmp-") {
			t.Fatalf("unexpected file %s", e.Name())
		}
	}
}
