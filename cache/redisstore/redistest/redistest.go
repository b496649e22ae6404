// Package redistest starts a real redis-server for tests, on a free
// loopback port in a temporary directory with persistence off, and stops
// it when the test ends, in the manner of net/http/httptest.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process.
type Server struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
	// extra are more redis-server arguments (cluster mode, say).
	extra []string
	// conf is the sentinel's configuration file; empty for a server.
	conf string
}

// Start starts a redis-server and stops it at the end of the test. Without
// redis-server installed the test is skipped, or fails when $CI is set (CI
// must install it).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is required in CI: .ci/run installs it")
		}
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, port: port, dir: t.TempDir()}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Restart starts the server again on the same port (empty: nothing is
// persisted) and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	args := []string{"--port", fmt.Sprint(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning"}
	if s.conf != "" {
		args = append([]string{s.conf, "--sentinel"}, args...)
	}
	s.cmd = exec.Command("redis-server", append(args, s.extra...)...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once resumed
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Client returns a client for the server with short timeouts, closed at the
// end of the test.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: 1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Cluster is a Redis Cluster of masters only, each a redis-server process
// on a free loopback port.
type Cluster struct {
	t       testing.TB
	Masters []*Server
}

// StartCluster starts n redis-servers in cluster mode, joins them with
// redis-cli --cluster create (the slots spread evenly, no replicas), waits
// until the cluster is ok, and stops them at the end of the test. Without
// redis-server and redis-cli the test is skipped, or fails when $CI is set.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: .ci/run installs it", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	c := &Cluster{t: t}
	args := []string{"--cluster", "create"}
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// Without full coverage required, the masters that are up serve
		// their slots while another is down (the default refuses every key
		// then).
		s := &Server{t: t, port: port, dir: t.TempDir(), extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no"}}
		s.Restart()
		t.Cleanup(s.Kill)
		c.Masters = append(c.Masters, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

// WaitOK waits until every master says the cluster is ok: the state
// spreads by gossip, and a node that has not heard yet answers
// CLUSTERDOWN.
func (c *Cluster) WaitOK() {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(time.Minute) // only a hang
	for _, m := range c.Masters {
		client := redis.NewClient(&redis.Options{Addr: m.Addr()})
		for {
			info, _ := client.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				client.Close()
				t.Fatalf("%s never saw the cluster ok:\n%s", m.Addr(), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		client.Close()
	}
}

// MasterFor is the master that owns key's slot.
func (c *Cluster) MasterFor(key string) *Server {
	c.t.Helper()
	client := redis.NewClient(&redis.Options{Addr: c.Masters[0].Addr()})
	defer client.Close()
	slot, err := client.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.MasterForSlot(int(slot))
}

// MasterForSlot is the master that owns slot.
func (c *Cluster) MasterForSlot(slot int) *Server {
	c.t.Helper()
	for _, m := range c.Masters {
		client := redis.NewClient(&redis.Options{Addr: m.Addr()})
		shards, err := client.ClusterShards(context.Background()).Result()
		client.Close()
		if err != nil {
			continue // a master that is down
		}
		for _, shard := range shards {
			for _, r := range shard.Slots {
				if int(r.Start) > slot || slot > int(r.End) {
					continue
				}
				for _, n := range shard.Nodes {
					for _, o := range c.Masters {
						if n.Role == "master" && int64(o.port) == n.Port {
							return o
						}
					}
				}
			}
		}
	}
	c.t.Fatalf("no master owns slot %d", slot)
	return nil
}

// Addrs are the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, s := range c.Masters {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

// Client returns a cluster client (closed at the end of the test).
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRetries: 1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// Sentinel is a master, a replica of it, and a Sentinel that monitors
// them as Name and fails over to the replica within a few seconds of the
// master going down.
type Sentinel struct {
	t        testing.TB
	Name     string
	Master   *Server
	Replica  *Server
	Sentinel *Server
}

// StartSentinel starts a master, a replica (--replicaof) and a sentinel
// (redis-server sentinel.conf --sentinel) on free loopback ports, waits
// until the sentinel knows the replica, and stops them at the end of the
// test. Without redis-server the test is skipped, or fails when $CI is
// set.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	sn := &Sentinel{t: t, Name: "m", Master: Start(t)}
	sn.Replica = start(t, []string{"--replicaof", "127.0.0.1", fmt.Sprint(sn.Master.port)})
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`sentinel monitor m 127.0.0.1 %d 1
sentinel down-after-milliseconds m 1000
sentinel failover-timeout m 5000
sentinel parallel-syncs m 1
`, sn.Master.port)), 0o600); err != nil {
		t.Fatal(err)
	}
	sn.Sentinel = start(t, nil)
	sn.Sentinel.Kill()
	sn.Sentinel.conf = conf
	sn.Sentinel.Restart()
	// The sentinel finds the replica through the master's INFO, every 10 s
	// at first; a failover before that has no replica to promote.
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr()})
	defer c.Close()
	deadline := time.Now().Add(time.Minute) // only a hang
	for {
		replicas, _ := c.Replicas(context.Background(), sn.Name).Result()
		ok := false
		for _, r := range replicas {
			if r["port"] == fmt.Sprint(sn.Replica.port) && !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") {
				ok = true
			}
		}
		if ok {
			return sn
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sentinel never saw the replica: %v", replicas)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start starts a redis-server with extra arguments.
func start(t testing.TB, extra []string) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, port: port, dir: t.TempDir(), extra: extra}
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

// MasterAddr is the master's address as the sentinel says it now.
func (sn *Sentinel) MasterAddr() string {
	c := redis.NewSentinelClient(&redis.Options{Addr: sn.Sentinel.Addr()})
	defer c.Close()
	addr, err := c.GetMasterAddrByName(context.Background(), sn.Name).Result()
	if err != nil || len(addr) != 2 {
		return ""
	}
	return net.JoinHostPort(addr[0], addr[1])
}

// Client returns a Sentinel-backed client (go-redis's failover client),
// with short timeouts, closed at the end of the test.
func (sn *Sentinel) Client() *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sn.Name, SentinelAddrs: []string{sn.Sentinel.Addr()},
		MaxRetries: 1, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	sn.t.Cleanup(func() { c.Close() })
	return c
}

// Stop pauses the server (SIGSTOP): its connections stay open but it
// answers nothing, as a server cut off by the network would.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Continue resumes a server paused by Stop.
func (s *Server) Continue() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGCONT)
	}
}
