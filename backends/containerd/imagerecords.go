package containerd

import (
	"sync"
)

// CreateContainer needs an image's record (its name's manifest) twice: the
// router resolves the name the kubelet gave, the driver opens the image.
// Listing containerd's image records each time costs a round trip, and
// more with every image on the node. The list is kept instead, for as long
// as nothing can have changed it: every change to containerd's image
// records in crimux's namespace is an event (/images/create, update,
// delete), and crimux's own changes mark it stale at once, before their
// event arrives. The list is trusted only while the event stream is known
// to be delivering: after crimux subscribes it publishes a probe event of
// its own and trusts the list once that probe comes back (then nothing
// sent before it was missed); when the stream breaks, the list is dropped
// until a new subscription's probe is back.

// imageRecords is the kept list and what decides whether it can be used.
type imageRecords struct {
	mu sync.Mutex // guards all below
	// live is set while the event stream delivers (its probe came back).
	live bool
	// gen counts changes: image events, crimux's own writes, the stream
	// going or coming back.
	gen uint64
	// list is the records as of listGen; valid when listGen == gen.
	list    []entry
	listGen uint64
	has     bool
}

// cached returns the kept list when it is still what containerd has, and
// otherwise the generation a fresh list should be stored under.
func (c *imageRecords) cached() ([]entry, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live && c.has && c.listGen == c.gen {
		return c.list, 0, true
	}
	return nil, c.gen, false
}

// store keeps a list read at generation gen, unless something changed
// since it was read.
func (c *imageRecords) store(es []entry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		c.list, c.listGen, c.has = es, gen, true
	}
}

// changed marks the kept list stale: an image event, or a change of
// crimux's own (called after containerd has it).
func (c *imageRecords) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.list, c.has = nil, false
}

// setLive says whether the event stream is delivering; either way what
// was kept may have missed a change.
func (c *imageRecords) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.gen++
	c.list, c.has = nil, false
}
