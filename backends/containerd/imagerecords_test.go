package containerd

import "testing"

// The kept list is used only while the event stream delivers and nothing
// changed since it was read; a list read across a change is not kept.
func TestImageRecords(t *testing.T) {
	var c imageRecords
	es := []entry{{name: "a"}}
	_, gen, ok := c.cached()
	if ok {
		t.Fatal("an empty cache answered")
	}
	c.store(es, gen)
	if _, _, ok := c.cached(); ok {
		t.Fatal("used before the event stream was known to deliver")
	}
	c.setLive(true)
	_, gen, _ = c.cached()
	c.store(es, gen)
	if got, _, ok := c.cached(); !ok || len(got) != 1 {
		t.Fatalf("not kept while live: %v %v", got, ok)
	}
	c.changed()
	if _, _, ok := c.cached(); ok {
		t.Fatal("used after a change")
	}
	// Read before a change, stored after it: stale, not kept.
	_, gen, _ = c.cached()
	c.changed()
	c.store(es, gen)
	if _, _, ok := c.cached(); ok {
		t.Fatal("a list read before a change was kept")
	}
	_, gen, _ = c.cached()
	c.store(es, gen)
	c.setLive(false)
	if _, _, ok := c.cached(); ok {
		t.Fatal("used after the event stream broke")
	}
	c.setLive(true)
	if _, _, ok := c.cached(); ok {
		t.Fatal("a list from before the stream broke was used after it came back")
	}
}
