package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// (cache.Notifier), and reads everything again. So it is once the first
// subscriptions are live (on a Cluster, once every master first listed
// has been subscribed to or failed): what was announced before then was
// not heard, and the subscriber may have read its keys before it.

// pingInterval is how long a subscription may stay silent before it is
// pinged.
const pingInterval = time.Second

// pingTimeout is how long a ping may go unanswered before the connection
// is taken for dead (a server stopped or cut off without closing it) and
// made again. A Redis that is busy for a few seconds (a slow script, a
// fork, an fsync stall) answers late, not never, and keeps its
// subscribers. (A variable: a test makes it longer than it waits.)
var pingTimeout = 10 * time.Second

// staleAfter is how long a ping may go unanswered before the client's
// other connections are asked whether the server answers them: when one
// does (a Sentinel failover moved the client to the new master, and the
// subscription was left on the old one), the subscription is made again
// at once, not after pingTimeout. A server that is merely busy answers
// neither, and keeps its subscribers.
const staleAfter = time.Second

// resubscribeBackoff bounds the pause between attempts to subscribe
// while the server cannot be reached.
const resubscribeBackoff = time.Second

// topologyInterval is how often a Cluster subscriber looks for masters
// that joined or left.
const topologyInterval = 5 * time.Second

// The change log. On a single node or behind Sentinel every announcement
// is also appended to a Redis stream, prefix+"log" (capped at about logLen
// entries), in the same Lua script as its PUBLISH, so that the two are
// one step. A subscriber keeps a mark: an entry of the log up to which it
// has heard every announcement. Every markInterval it appends a marker
// entry of its own, and moves its mark there when it hears the marker's
// announcement (pub/sub delivers in order, so it has heard everything
// announced before). When its subscription is lost and made again, it
// reads the log after its mark and passes those keys on, instead of
// reporting that changes may have been missed: a subscription that an
// outsider made Redis drop (an oversized PUBLISH) costs the changes made
// since the mark, not a read of every certificate. Only when the mark's
// entry is gone (trimmed, or lost in a failover), the log holds too many
// entries after it, or the log cannot be read, does it report missed
// changes. A Cluster, where the log would live on one master, has no log.
const (
	logLen       = 10000
	markInterval = 10 * time.Second
)

// announce appends a change to the log (KEYS[1], capped at about ARGV[4]
// entries) and publishes it on ARGV[1], in one step: the entry's ID.
var announce = redis.NewScript(`
local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[4], "*", "m", ARGV[2])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return id`)

// logKey is the change log's key.
func (s *Store) logKey() string { return s.prefix + "log" }

// message is an announcement of key: this Store's ID and a random nonce,
// so that one heard through several Cluster masters is passed on once,
// and nobody can predict, and so claim first, the ID of a change to come.
func (s *Store) message(key string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return s.self + "/" + hex.EncodeToString(b) + " " + key
}

// publish announces that key changed. On a Cluster it publishes through
// the master that owns key, which has just taken the write (any node
// would do: the cluster bus carries it to all), so that a dead master
// elsewhere never costs the announcement. Elsewhere it logs the change
// and publishes it in one script; should the script fail (the log key
// overwritten with another type, say), it publishes only.
func (s *Store) publish(ctx context.Context, key string) error {
	msg := s.message(key)
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		if node, err := cc.MasterForKey(ctx, s.redisKey(key)); err == nil {
			if err := node.Publish(ctx, s.channel(), msg).Err(); err == nil {
				return nil
			}
		}
		return s.client.Publish(ctx, s.channel(), msg).Err()
	}
	if _, err := s.log(ctx, msg); err == nil {
		return nil
	}
	return s.client.Publish(ctx, s.channel(), msg).Err()
}

// log appends msg to the change log and publishes it: the entry's ID.
func (s *Store) log(ctx context.Context, msg string) (string, error) {
	return announce.Run(ctx, s.client, []string{s.logKey()}, s.channel(), msg, "", logLen).Text()
}

// Subscribe calls f with every key another Store Put, until ctx ends, and
// with the empty key whenever changes may have been missed (see
// cache.Notifier), the first time once its subscriptions are live. It
// reconnects and subscribes again by itself; on a Cluster it listens on
// every master.
func (s *Store) Subscribe(ctx context.Context, f func(key string)) error {
	h := &hearer{self: s.self, f: f, seen: map[string]bool{}}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		s.subscribeCluster(ctx, cc, h)
	} else {
		h.log = s
		h.awaitFirst(1)
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
			if !late {
				h.awaitFirst(len(masters))
			}
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
	defer func() {
		if !subscribed && !failed {
			h.firstDone() // stopped before its first subscription
		}
	}()
	for ctx.Err() == nil {
		ps := c.Subscribe(ctx, s.channel())
		stop := context.AfterFunc(ctx, func() { ps.Close() })
		var pinged time.Time // when an unanswered ping was sent
		for ctx.Err() == nil {
			msg, err := receive(ctx, ps)
			if err != nil {
				if isTimeout(err) {
					if pinged.IsZero() {
						if ps.Ping(ctx) == nil {
							pinged = time.Now()
							continue
						}
					} else if time.Since(pinged) < pingTimeout {
						if time.Since(pinged) < staleAfter || !answersElsewhere(ctx, c) {
							continue // busy, not dead (yet)
						}
						// Left behind: the client answers, on another
						// connection (a new master), and this one does not.
					}
				}
				// Closed, refused, or a ping unanswered: make the
				// subscription again, after a pause.
				if !subscribed && !failed {
					h.firstDone() // it reports missed changes when it subscribes
				}
				failed = true
				break
			}
			pinged = time.Time{}
			switch msg := msg.(type) {
			case *redis.Subscription:
				if msg.Kind == "subscribe" {
					h.subscribed(ctx, subscribed || failed)
					subscribed = true
				}
			case *redis.Message:
				h.hear(msg.Payload)
			}
			h.markIfDue(ctx)
		}
		stop()
		ps.Close()
		select {
		case <-ctx.Done():
		case <-time.After(resubscribeBackoff):
		}
	}
}

// answersElsewhere reports whether c answers a PING on its own
// connections (not the subscription's) within staleAfter.
func answersElsewhere(ctx context.Context, c subscriber) bool {
	p, ok := c.(interface {
		Ping(context.Context) *redis.StatusCmd
	})
	if !ok {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, staleAfter)
	defer cancel()
	return p.Ping(pctx).Err() == nil
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
	log  *Store // the Store whose change log to catch up from; nil on a Cluster

	mu   sync.Mutex // guards everything below, and orders the calls to f
	seen map[string]bool
	ring [1024]string // the latest message IDs, oldest overwritten first
	next int

	first int // listeners of the first round not yet settled (firstDone)

	mark   string    // the log entry up to which every change was heard; "" when none
	marker string    // the message ID of the marker awaited, if any
	markID string    // its log entry
	markAt time.Time // when the last marker was appended (or tried)
}

func (h *hearer) hear(payload string) {
	from, key, found := strings.Cut(payload, " ")
	if !found {
		return
	}
	sender, _, numbered := strings.Cut(from, "/")
	h.mu.Lock()
	defer h.mu.Unlock()
	if sender == h.self {
		if from == h.marker && h.marker != "" {
			// Everything announced before the marker has been heard.
			h.mark, h.marker = h.markID, ""
		}
		return
	}
	if key == "" {
		return
	}
	if numbered && !h.fresh(from) {
		return
	}
	h.f(key)
}

// fresh reports whether the message ID from was not heard before, and
// remembers it. Called with h.mu held.
func (h *hearer) fresh(from string) bool {
	if h.seen[from] {
		return false
	}
	delete(h.seen, h.ring[h.next])
	h.ring[h.next] = from
	h.next = (h.next + 1) % len(h.ring)
	h.seen[from] = true
	return true
}

func (h *hearer) missed() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.f("")
}

// awaitFirst sets how many listeners' first subscriptions make the first
// round (one, or a Cluster's masters when first listed).
func (h *hearer) awaitFirst(n int) {
	h.mu.Lock()
	h.first = n
	h.mu.Unlock()
}

// firstDone counts one listener of the first round as settled: subscribed,
// or failed (it reports missed changes when it subscribes later), or
// stopped. When the last one is, changes may have been missed: everything
// announced before the subscriptions were live was not heard, and the
// user of the Store may have read keys before that.
func (h *hearer) firstDone() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.first == 0 {
		return
	}
	h.first--
	if h.first == 0 {
		h.f("")
	}
}

// subscribed is called when a subscription is made; again says whether
// one was made or tried before, so that changes may have been missed.
// With a change log, it catches up from the mark; otherwise, or when it
// cannot, it reports missed changes. Then it sets a new mark. A first
// subscription counts for the first round (firstDone).
func (h *hearer) subscribed(ctx context.Context, again bool) {
	if h.log != nil {
		if again && !h.catchUp(ctx) {
			h.missed()
		}
		h.newMark(ctx, true)
	} else if again {
		h.missed()
	}
	if !again {
		h.firstDone()
	}
}

// catchUp passes on the keys of the log's entries after the mark, and
// reports whether it could: the mark's entry is still in the log, and
// fewer than logLen entries follow it.
func (h *hearer) catchUp(ctx context.Context) bool {
	h.mu.Lock()
	mark := h.mark
	h.mu.Unlock()
	if mark == "" {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	entries, err := h.log.client.XRangeN(rctx, h.log.logKey(), mark, "+", logLen+1).Result()
	if err != nil || len(entries) == 0 || entries[0].ID != mark || len(entries) > logLen {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range entries[1:] {
		msg, _ := e.Values["m"].(string)
		from, key, found := strings.Cut(msg, " ")
		sender, _, numbered := strings.Cut(from, "/")
		if !found || key == "" || sender == h.self || numbered && !h.fresh(from) {
			continue
		}
		h.f(key)
	}
	return true
}

// newMark appends a marker to the log. A subscription just made (now)
// takes the marker's entry as its mark at once, unannounced: every change
// logged after it is announced on that subscription. Otherwise the marker
// is announced, and the mark moves there when the announcement is heard.
func (h *hearer) newMark(ctx context.Context, now bool) {
	msg := h.log.message("")
	from, _, _ := strings.Cut(msg, " ")
	rctx, cancel := context.WithTimeout(ctx, pingTimeout)
	var id string
	var err error
	if now {
		// Appended only: its announcement would tell nothing.
		id, err = h.log.client.XAdd(rctx, &redis.XAddArgs{Stream: h.log.logKey(), MaxLen: logLen, Approx: true, Values: []string{"m", msg}}).Result()
	} else {
		id, err = h.log.log(rctx, msg)
	}
	cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.markAt = time.Now()
	switch {
	case err != nil:
		if now {
			h.mark = "" // nothing to catch up from
		}
	case now:
		h.mark, h.marker = id, ""
	default:
		h.marker, h.markID = from, id
	}
}

// markIfDue appends a marker when the last is markInterval old.
func (h *hearer) markIfDue(ctx context.Context) {
	if h.log == nil {
		return
	}
	h.mu.Lock()
	due := time.Since(h.markAt) >= markInterval
	h.mu.Unlock()
	if due {
		h.newMark(ctx, false)
	}
}
