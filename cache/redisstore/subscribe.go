package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Change notifications. A Put announces its key on one channel,
// prefix+"changes", as "<sender>/<number> <key>". On a single node or
// behind Sentinel there is one subscription; on a Redis Cluster, where a
// PUBLISH reaches every node over the cluster bus, there is one on every
// master, so that no single master being down silences the fleet, and a
// message heard through several is passed on once. Whenever a
// subscription is lost and comes back (a master restarted, a Sentinel
// failover, a connection that stopped answering its pings), changes may
// have been missed: the subscriber is told with the empty key
// (cache.Notifier), and reads everything again.

// pingInterval is how long a subscription may stay silent before it is
// pinged; one ping unanswered for as long again means the connection is
// dead (a server stopped or cut off without closing it, or an old master
// that a failover left behind), and it is made again.
const pingInterval = time.Second

// resubscribeBackoff bounds the pause between attempts to subscribe
// while the server cannot be reached.
const resubscribeBackoff = time.Second

// topologyInterval is how often a Cluster subscriber looks for masters
// that joined or left.
const topologyInterval = 5 * time.Second

// publish announces that key changed. On a Cluster it publishes through
// the master that owns key, which has just taken the write (any node
// would do: the cluster bus carries it to all), so that a dead master
// elsewhere never costs the announcement.
func (s *Store) publish(ctx context.Context, key string) error {
	msg := s.self + "/" + strconv.FormatUint(s.sent.Add(1), 36) + " " + key
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		if node, err := cc.MasterForKey(ctx, s.redisKey(key)); err == nil {
			if err := node.Publish(ctx, s.channel(), msg).Err(); err == nil {
				return nil
			}
		}
	}
	return s.client.Publish(ctx, s.channel(), msg).Err()
}

// Subscribe calls f with every key another Store Put, until ctx ends, and
// with the empty key whenever changes may have been missed (see
// cache.Notifier). It reconnects and subscribes again by itself; on a
// Cluster it listens on every master.
func (s *Store) Subscribe(ctx context.Context, f func(key string)) error {
	h := &hearer{self: s.self, f: f, seen: map[string]bool{}}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		s.subscribeCluster(ctx, cc, h)
	} else {
		s.listen(ctx, s.client, h, false)
	}
	return ctx.Err()
}

// subscribeCluster keeps one listener on every master of the cluster,
// starting one for each master that appears and stopping the listener of
// one that is no longer a master, until ctx ends.
func (s *Store) subscribeCluster(ctx context.Context, cc *redis.ClusterClient, h *hearer) {
	var wg sync.WaitGroup
	defer wg.Wait()
	listeners := map[string]context.CancelFunc{}
	defer func() {
		for _, stop := range listeners {
			stop()
		}
	}()
	tick := time.NewTicker(topologyInterval)
	defer tick.Stop()
	// late is set once listeners have run, or the masters could not be
	// listed: a listener started then tells h that changes may have been
	// missed as soon as it subscribes (a master that took over from a dead
	// one, or the first master heard after an outage).
	late := false
	for {
		var mu sync.Mutex
		masters := map[string]*redis.Client{}
		err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
			mu.Lock()
			masters[c.Options().Addr] = c
			mu.Unlock()
			return nil
		})
		if err == nil {
			for addr, c := range masters {
				if listeners[addr] == nil {
					lctx, stop := context.WithCancel(ctx)
					listeners[addr] = stop
					started := late
					wg.Go(func() { s.listen(lctx, c, h, started) })
				}
			}
			for addr, stop := range listeners {
				if masters[addr] == nil {
					stop()
					delete(listeners, addr)
				}
			}
		}
		late = late || err != nil || len(listeners) > 0
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// subscriber is a client that can subscribe: any redis.UniversalClient,
// or a Cluster's node.
type subscriber interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}

// listen keeps one subscription on c until ctx ends: it passes every
// message on to h, pings the connection when it is silent, and makes a
// new subscription when the connection is dead. Every subscription but
// the first one, when nothing failed before it (late says whether
// something did), tells h that changes may have been missed.
func (s *Store) listen(ctx context.Context, c subscriber, h *hearer, late bool) {
	failed := late // a subscription was lost, or could not be made
	subscribed := false
	for ctx.Err() == nil {
		ps := c.Subscribe(ctx, s.channel())
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		pinged := false // a ping is unanswered
		for ctx.Err() == nil {
			msg, err := receive(ctx, ps)
			if err != nil {
				if isTimeout(err) && !pinged {
					pinged = ps.Ping(ctx) == nil
					if pinged {
						continue
					}
				}
				// Closed, refused, or a ping unanswered: make the
				// subscription again, after a pause.
				failed = true
				break
			}
			pinged = false
			switch msg := msg.(type) {
			case *redis.Subscription:
				if msg.Kind == "subscribe" {
					if subscribed || failed {
						h.missed()
					}
					subscribed = true
				}
			case *redis.Message:
				h.hear(msg.Payload)
			}
		}
		stop()
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeBackoff):
		}
	}
}

// receive is the subscription's next message, a pubsub error, or a
// timeout after pingInterval of silence. A reply go-redis cannot parse
// makes it panic; that is an error here, not a crash.
func receive(ctx context.Context, ps *redis.PubSub) (msg any, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("redisstore: unreadable pubsub message: %v", r)
		}
	}()
	return ps.ReceiveTimeout(ctx, pingInterval)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// hearer passes messages on to f: each once (a Cluster delivers one
// through every master), none of this Store's own, and the empty key when
// changes may have been missed.
type hearer struct {
	self string
	f    func(key string)

	mu   sync.Mutex // guards seen and ring, and orders the calls to f
	seen map[string]bool
	ring [1024]string // the latest message IDs, oldest overwritten first
	next int
}

func (h *hearer) hear(payload string) {
	from, key, found := strings.Cut(payload, " ")
	if !found || key == "" {
		return
	}
	sender, _, numbered := strings.Cut(from, "/")
	if sender == h.self {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if numbered {
		if h.seen[from] {
			return
		}
		delete(h.seen, h.ring[h.next])
		h.ring[h.next] = from
		h.next = (h.next + 1) % len(h.ring)
		h.seen[from] = true
	}
	h.f(key)
}

func (h *hearer) missed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.f("")
}
